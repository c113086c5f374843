// How a handle (Queue, Lock, Value, Pipe end, a Pool's rings) reaches a spawned or forkserver
// child: while a start record is written, each handle's serialize hook puts its descriptor in
// the table and writes the index; the launcher hands the descriptors over (inherited at known
// numbers, or SCM_RIGHTS), and in the child the same hook reads the index back as a descriptor.
// Outside a start record there is no table, and a handle refuses to be serialized: as Python
// says of Queue and Lock, they are shared through inheritance, not sent in messages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "../errors.hpp"
#include "posix/syscall.hpp"

namespace multiprocessing::detail {

struct fd_table {
    std::vector<int> fds;  // parent: descriptors to hand over; child: where they arrived
    // Parent: the index of each descriptor in `fds`. A descriptor is handed over once however
    // many handles name it (100,000 Locks in one arena are one descriptor).
    std::unordered_map<int, std::uint32_t> index;
    // Parent: what handles made for this child (a manager's connection holding the child's
    // references), released when the table goes, once the child has its descriptors.
    std::unordered_map<std::string, std::shared_ptr<void>> extras;

    static fd_table*& current() noexcept {
        static thread_local fd_table* table = nullptr;
        return table;
    }
};

// Once a target's arguments are decoded: the descriptors the child was handed are closed (each
// handle holds its own duplicate) and the table is gone, so the target itself cannot export
// into it by mistake, and no descriptor leaks into what the target starts.
inline void end_of_arguments() noexcept {
    auto*& t = fd_table::current();
    if (!t) return;
    for (int fd : t->fds) ::close(fd);
    t->fds.clear();
    t = nullptr;
}

// Makes `t` the table of this thread for its lifetime.
class fd_table_scope {
public:
    explicit fd_table_scope(fd_table& t) noexcept : saved_(fd_table::current()) {
        fd_table::current() = &t;
    }
    ~fd_table_scope() { fd_table::current() = saved_; }
    fd_table_scope(const fd_table_scope&) = delete;
    fd_table_scope& operator=(const fd_table_scope&) = delete;

private:
    fd_table* saved_;
};

[[noreturn]] inline void no_fd_table(const char* what) {
    throw SerializationError(std::string("multiprocessing: a ") + what +
                             " can only be handed to a child process as an argument when it "
                             "starts (or to a Pool's initializer), not sent in a message");
}

// The write side of a handle's hook: records `fd`, returns the index to serialize.
inline std::uint32_t export_fd(int fd, const char* what) {
    auto* t = fd_table::current();
    if (!t) no_fd_table(what);
    auto [it, added] = t->index.try_emplace(fd, std::uint32_t(t->fds.size()));
    if (added) t->fds.push_back(fd);
    return it->second;
}

// The read side, when the caller may already have what the descriptor refers to: the
// descriptor the child was handed for index `i` (still the table's; dup it to keep it).
inline int peek_fd(std::uint32_t i, const char* what) {
    auto* t = fd_table::current();
    if (!t) no_fd_table(what);
    if (i >= t->fds.size())
        throw SerializationError(std::string("multiprocessing: a ") + what +
                                 " refers to a descriptor the child was not given");
    return t->fds[i];
}

// The read side: a descriptor of our own (a duplicate) for index `i`.
inline posix::unique_fd import_fd(std::uint32_t i, const char* what) {
    int fd = ::fcntl(peek_fd(i, what), F_DUPFD_CLOEXEC, 3);
    if (fd == -1) posix::throw_errno("fcntl(F_DUPFD_CLOEXEC)");
    return posix::unique_fd(fd);
}

// The whole hook of a handle that travels as one descriptor: `get_fd()` gives it on the way
// out, `adopt(unique_fd)` rebuilds the handle from the child's duplicate on the way in.
template <class Archive, class GetFd, class Adopt>
void serialize_fd(Archive& ar, const char* what, GetFd&& get_fd, Adopt&& adopt) {
    std::uint32_t i = 0;
    if constexpr (Archive::is_loading) {
        ar(i);
        adopt(import_fd(i, what));
    } else {
        i = export_fd(get_fd(), what);
        ar(i);
    }
}

}  // namespace multiprocessing::detail
