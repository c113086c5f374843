// Shared memory behind the library's objects (Lock, Queue, Value, ...): an anonymous memfd,
// mapped MAP_SHARED. It has no name, so nothing can leak into /dev/shm and no other user can
// open it; a forked child inherits the mapping, and the descriptor is what a spawned child will
// be handed. Named segments (SharedMemory) live in shared_memory.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fd_table.hpp"
#include "syscall.hpp"

namespace multiprocessing::detail::posix {

inline std::size_t page_size() noexcept {
    static const std::size_t size = std::size_t(::sysconf(_SC_PAGESIZE));
    return size;
}

inline std::size_t round_to_pages(std::size_t n) noexcept {
    std::size_t p = page_size();
    return (n + p - 1) / p * p;
}

// A MAP_SHARED mapping of [offset, offset + size) of `fd`; unmapped on destruction.
class mapping {
public:
    mapping() noexcept = default;
    mapping(int fd, std::size_t size, std::size_t offset = 0) : size_(size) {
        void* p = MP_SYSCALL(
            ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset)));
        if (p == MAP_FAILED) throw_errno("mmap");
        addr_ = p;
    }
    mapping(mapping&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    mapping& operator=(mapping&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~mapping() { reset(); }

    void* data() const noexcept { return addr_; }
    std::size_t size() const noexcept { return size_; }
    void reset() noexcept {
        if (addr_) ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }

private:
    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

// A new anonymous shared file of `size` bytes (zero-filled), close-on-exec.
inline unique_fd create_anonymous_file(std::size_t size, const char* tag = "multiprocessing") {
    unique_fd fd(check(MP_SYSCALL(::memfd_create(tag, MFD_CLOEXEC)), "memfd_create"));
    check(retry([&] { return MP_SYSCALL(::ftruncate(fd.get(), off_t(size))); }), "ftruncate");
    return fd;
}

// Sets the size of the file behind `fd` (grows it, or cuts it when shrinking a ring).
inline void resize_file(int fd, std::size_t size) {
    check(retry([&] { return MP_SYSCALL(::ftruncate(fd, off_t(size))); }), "ftruncate");
}

inline std::size_t file_size(int fd) {
    struct stat st {};
    check(MP_SYSCALL(::fstat(fd, &st)), "fstat");
    return std::size_t(st.st_size);
}

// Which file `fd` is (device, inode): two descriptors of one memfd give the same pair.
inline std::pair<std::uint64_t, std::uint64_t> file_identity(int fd) {
    struct stat st {};
    check(MP_SYSCALL(::fstat(fd, &st)), "fstat");
    return {std::uint64_t(st.st_dev), std::uint64_t(st.st_ino)};
}

// One shared region: its descriptor and this process's mapping of it.
struct region {
    unique_fd fd;
    mapping map;
    bool arena = false;  // slots of small objects (detail/heap.hpp), not one object's region

    explicit region(std::size_t size, const char* tag = "multiprocessing")
        : fd(create_anonymous_file(round_to_pages(size), tag)),
          map(fd.get(), round_to_pages(size)) {}
    // Maps the whole of a region another process made (a spawned child's side).
    explicit region(unique_fd f) : fd(std::move(f)), map(fd.get(), file_size(fd.get())) {}
    void* data() const noexcept { return map.data(); }
};

}  // namespace multiprocessing::detail::posix
