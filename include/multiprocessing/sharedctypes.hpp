// Python: multiprocessing.sharedctypes. Value and Array live in shared memory, so every process
// that holds a handle (a copy, or a forked child's copy) sees the same object; Raw* have no lock.
//
// A Value or an Array is one shared mapping, its own lock (if any) included: handing a 1 GiB
// Array to children copies nothing, and its pages cost memory only once written. Under spawn
// and forkserver, each travels to a child as an argument as the descriptor of that one region
// (a lock of another region travels as itself), and the child maps it once (detail/fd_table.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "detail/posix/shm.hpp"
#include "errors.hpp"
#include "synchronize.hpp"

namespace multiprocessing {

namespace detail {

template <char C>
inline constexpr bool unknown_typecode = false;

// What may live in shared memory: bytes that mean the same in every process.
template <class T>
concept shareable = std::is_object_v<T> && std::is_trivially_copyable_v<T> &&
                    !std::is_const_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>;

}  // namespace detail

// Python: the typecodes of sharedctypes (array module letters). typecode_t<'i'> is int, so
// Python's Value('d', 3.14) translates literally to Value<typecode_t<'d'>>(3.14).
template <char C>
struct typecode {
    static_assert(detail::unknown_typecode<C>, "unknown typecode: use one of c u b B h H i I l L q Q f d");
};
template <> struct typecode<'c'> { using type = char; };
template <> struct typecode<'u'> { using type = wchar_t; };
template <> struct typecode<'b'> { using type = signed char; };
template <> struct typecode<'B'> { using type = unsigned char; };
template <> struct typecode<'h'> { using type = short; };
template <> struct typecode<'H'> { using type = unsigned short; };
template <> struct typecode<'i'> { using type = int; };
template <> struct typecode<'I'> { using type = unsigned int; };
template <> struct typecode<'l'> { using type = long; };
template <> struct typecode<'L'> { using type = unsigned long; };
template <> struct typecode<'q'> { using type = long long; };
template <> struct typecode<'Q'> { using type = unsigned long long; };
template <> struct typecode<'f'> { using type = float; };
template <> struct typecode<'d'> { using type = double; };
template <char C>
using typecode_t = typename typecode<C>::type;

namespace detail {

// The elements of an array in a shared region, after `prefix` bytes (room for its lock).
template <class T>
class shared_array {
public:
    shared_array() noexcept = default;  // what a spawned child's copy is decoded into
    explicit shared_array(std::size_t n, std::size_t prefix = 0) : size_(n) {
        if (n > (std::numeric_limits<std::size_t>::max() - prefix) / sizeof(T))
            throw std::length_error("array too large");
        region_ = std::make_shared<posix::region>(std::max<std::size_t>(prefix + n * sizeof(T), 1));
        data_ = reinterpret_cast<T*>(static_cast<char*>(region_->data()) + prefix);
        // A new region reads as zeros, which is already T{} for these types: writing them would
        // only make every page resident.
        if constexpr (!std::is_trivially_default_constructible_v<T>)
            for (std::size_t i = 0; i < n; ++i) ::new (data_ + i) T();
    }
    template <class It>
    shared_array(It first, std::size_t n, std::size_t prefix = 0) : shared_array(n, prefix) {
        for (std::size_t i = 0; i < n; ++i, ++first) data_[i] = T(*first);
    }

    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    const std::shared_ptr<posix::region>& region() const noexcept { return region_; }

    // Under spawn and forkserver: the region's descriptor, where the elements start in it and
    // how many there are. The caller has checked that a start record is being written or read.
    template <class Archive>
    void serialize(Archive& ar) {
        std::uint32_t i = 0;
        std::uint64_t prefix = 0, n = 0;
        if constexpr (Archive::is_loading) {
            ar(i, prefix, n);
            auto r = std::make_shared<posix::region>(import_fd(i, "Array"));
            const std::size_t bytes = r->map.size();
            if (prefix > bytes || prefix % alignof(T) != 0 || n > (bytes - prefix) / sizeof(T))
                throw SerializationError("multiprocessing: an Array lies outside its region");
            data_ = std::launder(reinterpret_cast<T*>(static_cast<char*>(r->data()) + prefix));
            size_ = std::size_t(n);
            region_ = std::move(r);
        } else {
            i = export_fd(region_->fd.get(), "Array");
            prefix = std::uint64_t(reinterpret_cast<char*>(data_) - static_cast<char*>(region_->data()));
            n = size_;
            ar(i, prefix, n);
        }
    }

private:
    std::shared_ptr<posix::region> region_;
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

template <class R, class T>
concept range_of = std::ranges::input_range<R> &&
                   std::convertible_to<std::ranges::range_reference_t<R>, T>;

template <class T, class R>
shared_array<T> make_shared_array(R&& r, std::size_t prefix = 0) {
    if constexpr (std::ranges::sized_range<R> && std::ranges::forward_range<R>) {
        return shared_array<T>(std::ranges::begin(r), std::size_t(std::ranges::size(r)), prefix);
    } else {
        std::vector<T> items;
        for (auto&& x : r) items.push_back(T(x));
        return shared_array<T>(items.begin(), items.size(), prefix);
    }
}

// A Value's or an Array's own RLock sits at the start of the object's region and the object
// right after it, so that both share a cache line.
template <class T>
inline constexpr std::size_t after_lock =
    (sizeof(rlock_state) + alignof(T) - 1) / alignof(T) * alignof(T);

// A new RLock at `p` (the start of a Value's slot, or of an Array's region).
inline AnyLock own_lock(const heap::block& p) {
    return lock_access::adopt<RLock>(shared_slot<rlock_state>::emplace(p, 0));
}

// The own lock of a Value or an Array that reached a spawned child with its region.
inline AnyLock attach_own_lock(heap::block p) {
    return lock_access::adopt<RLock>(shared_slot<rlock_state>::attach(std::move(p)));
}

// Whether `lock` is the own RLock at `p` (travels with the object, not apart).
inline bool is_own_lock(const AnyLock& lock, const heap::block& p) noexcept {
    const RLock* rl = lock.get_if<RLock>();
    if (!rl) return false;
    const auto& slot = lock_access::slot(*rl);
    return slot.region() == p.region && slot.offset() == p.offset;
}

// How a Value's or an Array's lock travels.
enum class lock_travel : std::uint8_t { none, own, other };

}  // namespace detail

template <detail::shareable T>
class Value;
template <detail::shareable T>
class Array;

// Python: multiprocessing.sharedctypes.RawValue(typecode, value): no lock.
template <detail::shareable T>
class RawValue {
public:
    RawValue() : RawValue(T{}) {}
    explicit RawValue(T init) : obj_(detail::shared_slot<T>::create(init)) {}

    // Python: .value; a reference into shared memory (reads and writes are not atomic).
    T& value() const noexcept { return *obj_; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "RawValue", obj_);
    }

private:
    template <detail::shareable U>
    friend class Value;
    explicit RawValue(detail::shared_slot<T> obj) noexcept : obj_(std::move(obj)) {}

    detail::shared_slot<T> obj_;
};

// Python: multiprocessing.sharedctypes.RawArray(typecode, size_or_initializer): no lock.
template <detail::shareable T>
class RawArray {
public:
    using value_type = T;
    using iterator = T*;

    // An empty array.
    RawArray() : RawArray(std::size_t(0)) {}
    // Python: RawArray(typecode, size): `size` zeros. (Braces hold elements, as for vector.)
    explicit RawArray(std::size_t size) : a_(size) {}
    // Python: RawArray(typecode, [1, 2, 3])
    RawArray(std::initializer_list<T> init) : a_(init.begin(), init.size()) {}
    template <detail::range_of<T> R>
        requires(!std::same_as<std::remove_cvref_t<R>, RawArray>)
    explicit RawArray(R&& r) : a_(detail::make_shared_array<T>(std::forward<R>(r))) {}

    // Python: len(a), a[i], iteration, a[:] (a span over the shared elements).
    std::size_t size() const noexcept { return a_.size(); }
    T& operator[](std::size_t i) const noexcept { return a_.data()[i]; }
    T* data() const noexcept { return a_.data(); }
    T* begin() const noexcept { return a_.data(); }
    T* end() const noexcept { return a_.data() + a_.size(); }
    std::span<T> span() const noexcept { return {a_.data(), a_.size()}; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "RawArray", a_);
    }

private:
    template <detail::shareable U>
    friend class Array;
    explicit RawArray(detail::shared_array<T> a) noexcept : a_(std::move(a)) {}

    detail::shared_array<T> a_;
};

namespace detail {

// What Value and Array add to their raw object: the lock (Python's synchronized wrapper).
template <class D>
class synchronized : public lockable<D> {
public:
    // Python: get_lock(). Throws ValueError for an object created with lock = false (in Python
    // that object is a raw one, without get_lock).
    AnyLock& get_lock() {
        require_lock();
        return *lock_;
    }
    const AnyLock& get_lock() const {
        require_lock();
        return *lock_;
    }
    // Python: `with v:` (acquire and release the lock).
    void release() const { get_lock().release(); }

protected:
    explicit synchronized(std::optional<AnyLock> lock) : lock_(std::move(lock)) {}

    // The hook of Value and Array: the lock, then the object (`raw`, whose own lock would lie
    // at `own_lock_of(raw)`). An own lock travels with the object; another travels as itself.
    template <class Archive, class Raw>
    void serialize_with(Archive& ar, const char* what, Raw& raw,
                        heap::block (*own_lock_of)(const Raw&)) {
        if (!fd_table::current()) no_fd_table(what);
        lock_travel how = lock_travel::none;
        if constexpr (Archive::is_loading) {
            ar(how, raw);
            if (how == lock_travel::own) {
                lock_ = attach_own_lock(own_lock_of(raw));
            } else if (how == lock_travel::other) {
                AnyLock l;
                ar(l);
                lock_ = std::move(l);
            } else if (how == lock_travel::none) {
                lock_.reset();
            } else {
                throw SerializationError(std::string("multiprocessing: a corrupt ") + what);
            }
        } else {
            if (lock_) how = is_own_lock(*lock_, own_lock_of(raw)) ? lock_travel::own : lock_travel::other;
            ar(how, raw);
            if (how == lock_travel::other) ar(*lock_);
        }
    }

private:
    friend struct lock_access;
    void require_lock() const {
        if (!lock_) throw ValueError("object created with lock=false has no lock");
    }
    bool acquire_until(detail::deadline deadline) const {
        return lock_access::acquire_until(get_lock(), deadline);
    }

    std::optional<AnyLock> lock_;
};

}  // namespace detail

// Python: multiprocessing.Value(typecode, value, lock=True). `lock` may be true (a new RLock,
// as in Python), false (no lock), or an existing Lock or RLock to share.
template <detail::shareable T>
class Value : public detail::synchronized<Value<T>> {
    using base = detail::synchronized<Value<T>>;

public:
    Value() : Value(T{}) {}
    explicit Value(T init, bool lock = true) : Value(make(init, lock)) {}
    Value(T init, AnyLock lock) : base(std::move(lock)), obj_(init) {}

    // Python: Value.value; a reference into shared memory. Not atomic, as in Python:
    // `v.value() += 1` from several processes needs the lock.
    T& value() const noexcept { return obj_.value(); }
    // Python: Value.get_obj()
    const RawValue<T>& get_obj() const noexcept { return obj_; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        this->serialize_with(ar, "Value", obj_, +[](const RawValue<T>& o) {
            return detail::heap::block{o.obj_.region(), o.obj_.offset() - detail::after_lock<T>};
        });
    }

private:
    struct parts {
        std::optional<AnyLock> lock;
        RawValue<T> obj;
    };
    explicit Value(parts p) : base(std::move(p.lock)), obj_(std::move(p.obj)) {}
    // With lock = true, a new RLock (Python's default) in the value's own region.
    static parts make(const T& init, bool lock) {
        if (!lock) return {std::nullopt, RawValue<T>(init)};
        auto b = detail::heap::allocate(detail::after_lock<T> + sizeof(T),
                                        std::max(alignof(detail::rlock_state), alignof(T)));
        AnyLock own = detail::own_lock(b);
        return {std::move(own),
                RawValue<T>(detail::shared_slot<T>::emplace(b, detail::after_lock<T>, init))};
    }

    RawValue<T> obj_;
};

// Python: multiprocessing.Array(typecode, size_or_initializer, lock=True).
template <detail::shareable T>
class Array : public detail::synchronized<Array<T>> {
    using base = detail::synchronized<Array<T>>;

public:
    using value_type = T;
    using iterator = T*;

    // An empty array with its lock.
    Array() : Array(std::size_t(0)) {}
    explicit Array(std::size_t size, bool lock = true)
        : Array(make(lock, [&](std::size_t prefix) { return detail::shared_array<T>(size, prefix); })) {}
    Array(std::size_t size, AnyLock lock) : base(std::move(lock)), a_(size) {}
    Array(std::initializer_list<T> init, bool lock = true)
        : Array(make(lock, [&](std::size_t prefix) {
              return detail::shared_array<T>(init.begin(), init.size(), prefix);
          })) {}
    Array(std::initializer_list<T> init, AnyLock lock) : base(std::move(lock)), a_(init) {}
    template <detail::range_of<T> R>
        requires(!std::same_as<std::remove_cvref_t<R>, Array>)
    explicit Array(R&& r, bool lock = true)
        : Array(make(lock, [&](std::size_t prefix) {
              return detail::make_shared_array<T>(std::forward<R>(r), prefix);
          })) {}
    template <detail::range_of<T> R>
        requires(!std::same_as<std::remove_cvref_t<R>, Array>)
    Array(R&& r, AnyLock lock) : base(std::move(lock)), a_(std::forward<R>(r)) {}

    // Python: len(a), a[i], iteration, a[:] (a span over the shared elements).
    std::size_t size() const noexcept { return a_.size(); }
    T& operator[](std::size_t i) const noexcept { return a_[i]; }
    T* data() const noexcept { return a_.data(); }
    T* begin() const noexcept { return a_.begin(); }
    T* end() const noexcept { return a_.end(); }
    std::span<T> span() const noexcept { return a_.span(); }
    // Python: Array.get_obj()
    const RawArray<T>& get_obj() const noexcept { return a_; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        this->serialize_with(ar, "Array", a_, +[](const RawArray<T>& a) {
            return detail::heap::block{a.a_.region(), 0};
        });
    }

private:
    struct parts {
        std::optional<AnyLock> lock;
        RawArray<T> a;
    };
    explicit Array(parts p) : base(std::move(p.lock)), a_(std::move(p.a)) {}
    // With lock = true, a new RLock (Python's default) at the start of the elements' region.
    template <class MakeElements>
    static parts make(bool lock, MakeElements elements) {
        if (!lock) return {std::nullopt, RawArray<T>(elements(0))};
        detail::shared_array<T> a = elements(detail::after_lock<T>);
        AnyLock own = detail::own_lock({a.region(), 0});
        return {std::move(own), RawArray<T>(std::move(a))};
    }

    RawArray<T> a_;
};

}  // namespace multiprocessing
