// Python: multiprocessing.shared_memory. A SharedMemory is a named segment in /dev/shm that
// any process can attach to by name; ShareableList<T> is a fixed-length list kept in one.
//
// Segments are created exclusively (O_EXCL) with mode 0600; generated names are "mp-" and 128
// random bits. The creator registers each segment with the resource tracker, which unlinks it
// when the program ends if nobody called unlink(), even after a SIGKILL.
//
// A SharedMemory or a ShareableList travels by name, as Python pickles it: as a child's argument
// under spawn and forkserver, in a Pool's initargs, as a task's argument or result, through a
// Queue or Pipe. The receiver attaches (it does not register the segment with the resource
// tracker: attaching is not creating, so the creator's tracker stays responsible for unlinking),
// so the segment must still have its name when it arrives. A child registers the segments it
// creates with its parent's tracker (process.hpp hands the tracker over), so they outlive the
// child as under fork. SharedMemory(track=false) is never registered (Python 3.13).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "serialization.hpp"
#include "detail/posix/named_shm.hpp"
#include "detail/posix/shm.hpp"
#include "detail/resource_tracker.hpp"
#include "errors.hpp"

namespace multiprocessing::shared_memory {

// Python: the keyword arguments of SharedMemory(name=None, create=False, size=0, *, track=True).
struct SharedMemoryOptions {
    std::optional<std::string> name = std::nullopt;
    bool create = false;
    std::ptrdiff_t size = 0;
    bool track = true;
};

// Python: multiprocessing.shared_memory.SharedMemory. A copyable handle: copies share one
// mapping; the last copy to go unmaps it (Python's close() in __del__), but nothing unlinks
// the segment except unlink() or, at the end of the program, the resource tracker.
class SharedMemory {
public:
    // Python: SharedMemory(name=None, create=False, size=0, track=True). The name may come with
    // or without its leading slash; `size` is ignored when attaching. With track=false the
    // segment is never registered with the resource tracker: unlink() is the caller's job.
    explicit SharedMemory(std::optional<std::string> name, bool create = false,
                          std::ptrdiff_t size = 0, bool track = true)
        : s_(std::make_shared<state>()) {
        s_->track = track;
        if (size < 0) throw ValueError("'size' must be a positive integer");
        if (create && size == 0)
            throw ValueError("'size' must be a positive number different from zero");
        if (!create && !name) throw ValueError("'name' can only be None if create=True");
        if (create)
            make(name, std::size_t(size));
        else
            attach(*name);
        s_->map = detail::posix::mapping(s_->fd.get(), s_->size);
    }
    // An empty handle, as closed, with no name (Python has none; SharedMemory(None) throws as
    // Python's SharedMemory() does). What a task's result or a decoded value starts as.
    SharedMemory() : s_(std::make_shared<state>()) {}
    explicit SharedMemory(const SharedMemoryOptions& o)
        : SharedMemory(o.name, o.create, o.size, o.track) {}

    // Python: SharedMemory.name (without the leading slash, as Python reports it).
    std::string name() const { return s_->name.empty() ? std::string() : s_->name.substr(1); }
    // Python: SharedMemory.size (the segment's size in bytes).
    std::size_t size() const noexcept { return s_->size; }
    // Python: SharedMemory.buf; empty after close().
    std::span<std::byte> buf() const noexcept {
        if (!s_->map.data()) return {};
        return {static_cast<std::byte*>(s_->map.data()), s_->size};
    }

    // Python: SharedMemory.close(): unmaps it from this process (for every copy of the handle).
    void close() const noexcept {
        s_->map.reset();
        s_->fd.reset();
    }
    // Python: SharedMemory.unlink(): removes the name; mappings stay valid until closed.
    void unlink() const {
        if (s_->name.size() <= 1) throw ValueError("this SharedMemory has no name to unlink");
        detail::posix::shm_remove(s_->name);
        if (s_->track) detail::resource_tracker::instance().unregister_shm(s_->name);
    }

    // Travels by name; the receiver attaches (see the top of the file). A closed handle arrives
    // closed, as under fork.
    template <class Archive>
    void serialize(Archive& ar) {
        std::string name = s_->name;
        std::uint64_t size = s_->size;
        bool open = s_->map.data() != nullptr;
        ar(name, size, open);
        if constexpr (Archive::is_loading) {
            if (open) {
                *this = SharedMemory(name);
            } else {
                s_ = std::make_shared<state>();
                s_->name = with_slash(name);
                s_->size = std::size_t(size);
            }
        }
    }

private:
    struct state {
        std::string name;  // with the leading slash
        detail::posix::unique_fd fd;
        detail::posix::mapping map;
        std::size_t size = 0;
        bool track = true;  // registered with the resource tracker (when this process made it)
    };

    static std::string with_slash(const std::string& name) {
        return name.starts_with('/') ? name : "/" + name;
    }

    void make(const std::optional<std::string>& name, std::size_t size) {
        auto& tracker = detail::resource_tracker::instance();
        if (s_->track) tracker.ensure_running();
        if (name) {
            s_->name = with_slash(*name);
            s_->fd = detail::posix::shm_create(s_->name);
            if (!s_->fd)
                throw std::system_error(EEXIST, std::generic_category(), "shm_open " + s_->name);
        } else {
            do {
                s_->name = detail::posix::random_shm_name();
                s_->fd = detail::posix::shm_create(s_->name);
            } while (!s_->fd);
        }
        // Tracked from the moment it exists: a SIGKILL from here on leaks nothing.
        if (s_->track) tracker.register_shm(s_->name);
        try {
            detail::posix::resize_file(s_->fd.get(), size);
        } catch (...) {
            detail::posix::shm_remove(s_->name, std::nothrow);
            if (s_->track) tracker.unregister_shm(s_->name);
            throw;
        }
        s_->size = size;
    }

    void attach(const std::string& name) {
        s_->name = with_slash(name);
        s_->fd = detail::posix::shm_attach(s_->name);
        s_->size = detail::posix::file_size(s_->fd.get());
        if (s_->size == 0) throw ValueError("cannot mmap an empty file");
    }

    std::shared_ptr<state> s_;
};

// Python: multiprocessing.shared_memory.ShareableList, for one trivially copyable type T
// (Python mixes int, float, bool, str and bytes; a C++ list holds one type, e.g. a variant-free
// struct). Its length is fixed at creation, as in Python.
template <class T>
    requires std::is_trivially_copyable_v<T>
class ShareableList {
public:
    using value_type = T;
    using iterator = T*;

    // Python: ShareableList(sequence, name=None): a new segment holding a copy of `sequence`.
    ShareableList(std::initializer_list<T> sequence, std::optional<std::string> name = std::nullopt)
        : ShareableList(items_tag{}, std::vector<T>(sequence), std::move(name)) {}
    template <std::ranges::input_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, T> &&
                 (!std::same_as<std::remove_cvref_t<R>, ShareableList>)  // a copy is a handle
    explicit ShareableList(R&& sequence, std::optional<std::string> name = std::nullopt)
        : ShareableList(items_tag{}, collect(sequence), std::move(name)) {}
    // Python: ShareableList(): a new, empty list. (While a value is decoded, the placeholder it
    // is decoded into: no segment.)
    ShareableList() : ShareableList(placeholder()) {}
    // Python: ShareableList(name=...): attaches to an existing list (pass std::nullopt, as
    // Python passes None for the sequence).
    ShareableList(std::nullopt_t, std::string name) : shm_(std::move(name)) {
        auto buf = shm_.buf();
        header h{};
        if (buf.size() >= sizeof h) std::memcpy(&h, buf.data(), sizeof h);
        if (h.magic != magic || h.elem_size != sizeof(T) ||
            buf.size() < data_offset + h.count * sizeof(T))
            throw ValueError("shared memory segment '" + shm_.name() +
                             "' does not hold a ShareableList of this element type");
        size_ = std::size_t(h.count);
        data_ = reinterpret_cast<T*>(buf.data() + data_offset);
    }

    // Python: len(sl), sl[i] (unchecked here; at() checks and takes negative indices).
    std::size_t size() const noexcept { return size_; }
    T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T& at(std::ptrdiff_t i) const {
        if (i < 0) i += std::ptrdiff_t(size_);
        if (i < 0 || std::size_t(i) >= size_) throw std::out_of_range("index out of range");
        return data_[i];
    }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }
    std::span<T> span() const noexcept { return {data_, size_}; }

    // Python: ShareableList.count(value) and index(value).
    std::size_t count(const T& value) const { return std::size_t(std::count(begin(), end(), value)); }
    std::size_t index(const T& value) const {
        auto it = std::find(begin(), end(), value);
        if (it == end()) throw ValueError("value not in list");
        return std::size_t(it - begin());
    }

    // Python: ShareableList.shm
    const SharedMemory& shm() const noexcept { return shm_; }

    // Travels by name; the receiver attaches (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        std::string name;
        if constexpr (!Archive::is_loading) name = shm_.name();
        ar(name);
        if constexpr (Archive::is_loading) *this = ShareableList(std::nullopt, name);
    }

private:
    struct items_tag {};
    struct placeholder_tag {};
    static ShareableList placeholder() {
        if (detail::decoding()) return ShareableList(placeholder_tag{});
        return ShareableList(std::initializer_list<T>{});
    }
    explicit ShareableList(placeholder_tag) : data_(nullptr), size_(0) {}
    template <class R>
    static std::vector<T> collect(R& sequence) {
        std::vector<T> items;
        if constexpr (std::ranges::sized_range<R>) items.reserve(std::ranges::size(sequence));
        for (auto&& x : sequence) items.push_back(T(x));
        return items;
    }
    ShareableList(items_tag, std::vector<T> items, std::optional<std::string> name)
        : shm_(std::move(name), true, std::ptrdiff_t(data_offset + items.size() * sizeof(T))),
          data_(reinterpret_cast<T*>(shm_.buf().data() + data_offset)),
          size_(items.size()) {
        const header h{magic, items.size(), sizeof(T)};
        std::memcpy(shm_.buf().data(), &h, sizeof h);
        if (!items.empty()) std::memcpy(static_cast<void*>(data_), items.data(), size_ * sizeof(T));
    }

    struct header {
        std::uint64_t magic;
        std::uint64_t count;
        std::uint64_t elem_size;
    };
    static constexpr std::uint64_t magic = 0x6d702d6c69737431;  // "mp-list1"
    static constexpr std::size_t data_offset =
        (sizeof(header) + alignof(T) - 1) / alignof(T) * alignof(T);

    SharedMemory shm_;
    T* data_;
    std::size_t size_;
};

}  // namespace multiprocessing::shared_memory
