// Python: multiprocessing.queues (Queue, SimpleQueue, JoinableQueue).
//
// Items live in shared memory (detail/shared_ring.hpp) and put() returns once the item is
// there. There is no feeder thread, so Python's two classic traps cannot happen: a child that
// put items may be joined before they are consumed, and a process that exits right after put()
// loses nothing (CPython docs, "Joining processes that use queues"; bpo-3789, bpo-23004).
// A queue also survives a user killed at any moment (a producer killed inside put() leaves no
// partial item; a lock left by a dead process is taken over), an unbounded queue grows as
// needed (an item may be bigger than all memory the queue had), qsize() is exact, and nothing
// is ever named in /dev/shm.
//
// Each queue is a cheap copyable handle: a copy refers to the same queue, as a Python
// reference does, and a child gets a working handle under every start method.
//
// Beyond Python: JoinableQueue::join(timeout). As in Python, put()/get() on a closed queue
// throw mp::ValueError "Queue is closed" (SimpleQueue too, where Python raises OSError);
// join_thread() and cancel_join_thread() are no-ops, as there is no thread.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/fd_table.hpp"
#include "detail/posix/syscall.hpp"
#include "detail/shared_ring.hpp"
#include "detail/timeout.hpp"
#include "errors.hpp"
#include "serialization.hpp"

namespace multiprocessing {

namespace detail {

// How a queue stores an item. Both ends are the same Queue<T> of one program, so the record
// need not be mp::serialize's encoding when a cheaper one says the same:
//  - bitwise: T's own bytes (trivially copyable, no padding, no hook): one memcpy each way;
//  - elements: a string or a vector of such T, as its element bytes (the record length gives
//    the count): one memcpy each way, no intermediate buffer, even for a 100 MB item;
//  - otherwise serialize_into a reused per-thread buffer, decoded in place from the ring.
enum class item_encoding { bitwise, elements, serialized };

template <class T>
consteval item_encoding encoding_of() {
    if constexpr (bulk<T>()) return item_encoding::bitwise;
    else if constexpr (contiguous_bulk<T>()) return item_encoding::elements;
    else return item_encoding::serialized;
}

// Identifies T across the processes of one program (checked when a descriptor is adopted).
template <class T>
constexpr std::uint64_t queue_type_tag() noexcept {
    return fnv1a(type_name<T>());
}

// One encoding buffer per thread, reused across items; a huge one is given back afterwards.
inline std::vector<std::byte>& queue_scratch() noexcept {
    thread_local std::vector<std::byte> buffer;
    return buffer;
}
struct scratch_release {
    static constexpr std::size_t keep = 1 << 20;
    ~scratch_release() {
        auto& b = queue_scratch();
        if (b.capacity() > keep) std::vector<std::byte>().swap(b);
    }
};

[[noreturn]] inline void bad_queue_record() {
    throw SerializationError("mp::Queue: a record does not hold an item of this queue's type");
}

template <class T>
bool put_item(shared_ring& ring, const T& obj, detail::deadline deadline) {
    constexpr item_encoding e = encoding_of<T>();
    if constexpr (e == item_encoding::bitwise) {
        return ring.put(
            sizeof(T),
            [&](const ring_span& s) noexcept { s.write(0, std::addressof(obj), sizeof(T)); },
            deadline);
    } else if constexpr (e == item_encoding::elements) {
        const std::size_t bytes = obj.size() * sizeof(typename T::value_type);
        return ring.put(
            bytes, [&](const ring_span& s) noexcept { s.write(0, obj.data(), bytes); }, deadline);
    } else {
        scratch_release release;
        auto& buffer = queue_scratch();
        buffer.clear();
        serialize_into(buffer, obj);
        return ring.put(
            buffer.size(),
            [&](const ring_span& s) noexcept { s.write(0, buffer.data(), buffer.size()); },
            deadline);
    }
}

// nullopt when `deadline` passed first. Decoding happens under the queue's lock, straight
// from the ring; a record that fails to decode is dropped and its error thrown.
template <class T>
std::optional<T> get_item(shared_ring& ring, detail::deadline deadline) {
    constexpr item_encoding e = encoding_of<T>();
    if constexpr (e == item_encoding::bitwise) {
        std::array<std::byte, sizeof(T)> raw;
        bool bad_size = false;
        bool got = ring.get(
            [&](const ring_span& s) noexcept {
                bad_size = s.size() != sizeof(T);
                if (!bad_size) s.read(0, raw.data(), sizeof(T));
            },
            deadline);
        if (!got) return std::nullopt;
        if (bad_size) bad_queue_record();
        return std::bit_cast<T>(raw);
    } else if constexpr (e == item_encoding::elements) {
        using E = typename T::value_type;
        std::optional<T> out;
        bool got = ring.get(
            [&](const ring_span& s) {
                if (s.size() % sizeof(E) != 0) bad_queue_record();
                const std::size_t n = s.size() / sizeof(E);
                // Records start 8-byte aligned, so the elements can be read in place.
                if (s.contiguous() && alignof(E) <= 8) {
                    const E* p = reinterpret_cast<const E*>(s.first);
                    out.emplace(p, p + n);
                } else {
                    out.emplace();
                    out->resize(n);
                    s.read(0, out->data(), s.size());
                }
            },
            deadline);
        if (!got) return std::nullopt;
        return out;
    } else {
        std::optional<T> out;
        scratch_release release;
        bool got = ring.get(
            [&](const ring_span& s) {
                if (s.contiguous()) {
                    out.emplace(deserialize<T>(std::span<const std::byte>(s.first, s.first_size)));
                } else {
                    auto& buffer = queue_scratch();
                    buffer.resize(s.size());
                    s.read(0, buffer.data(), buffer.size());
                    out.emplace(deserialize<T>(std::span<const std::byte>(buffer)));
                }
            },
            deadline);
        if (!got) return std::nullopt;
        return out;
    }
}

// What every handle of one queue in this process shares.
struct queue_state {
    shared_ring ring;
    std::atomic<bool> closed{false};

    queue_state(std::uint64_t maxsize, std::uint64_t tag) : ring(maxsize, tag) {}
    queue_state(posix::unique_fd fd, std::uint64_t tag) : ring(std::move(fd), tag) {}
};

struct queue_access;

}  // namespace detail

// Python: multiprocessing.Queue(maxsize=0). A process-shared FIFO of T; maxsize <= 0 means
// unbounded. put(), get() block; with a timeout (a chrono duration or double seconds) they
// throw mp::Full / mp::Empty when it passes; the _nowait forms do not wait at all.
template <class T>
class Queue {
    static_assert((detail::require_serializable<T>(), true));

public:
    using value_type = T;

    explicit Queue(std::int64_t maxsize = 0)
        : state_(std::make_shared<detail::queue_state>(maxsize > 0 ? std::uint64_t(maxsize) : 0,
                                                       detail::queue_type_tag<T>())) {}

    // Python: Queue.put(obj); blocks while the queue holds maxsize items.
    void put(const T& obj) { detail::put_item(ring(), obj, detail::forever); }
    // Python: Queue.put(obj, timeout=t); throws mp::Full when the timeout passes.
    template <detail::timeout_like Timeout>
    void put(const T& obj, Timeout timeout) {
        if (!detail::put_item(ring(), obj, detail::deadline_after(timeout))) throw Full();
    }
    // Python: Queue.put_nowait(obj); throws mp::Full when the queue is full.
    void put_nowait(const T& obj) {
        if (!detail::put_item(ring(), obj, detail::deadline::poll_once())) throw Full();
    }

    // Python: Queue.get(); blocks until an item is there.
    T get() { return *detail::get_item<T>(ring(), detail::forever); }
    // Python: Queue.get(timeout=t); throws mp::Empty when the timeout passes.
    template <detail::timeout_like Timeout>
    T get(Timeout timeout) {
        auto v = detail::get_item<T>(ring(), detail::deadline_after(timeout));
        if (!v) throw Empty();
        return std::move(*v);
    }
    // Python: Queue.get_nowait(); throws mp::Empty when the queue is empty.
    T get_nowait() {
        auto v = detail::get_item<T>(ring(), detail::deadline::poll_once());
        if (!v) throw Empty();
        return std::move(*v);
    }

    // Python: Queue.qsize(); exact (Python's is approximate and missing on macOS).
    std::size_t qsize() const { return state_->ring.qsize(); }
    // Python: Queue.empty()
    bool empty() const { return state_->ring.empty(); }
    // Python: Queue.full(); never true for an unbounded queue.
    bool full() const { return state_->ring.full(); }
    // The maxsize given at construction (0: unbounded).
    std::size_t maxsize() const noexcept { return std::size_t(state_->ring.maxsize()); }

    // Python: Queue.close(): this process will use the queue no more; put()/get() through any
    // of its handles here then throw mp::ValueError. Items already put stay in the queue.
    void close() noexcept { state_->closed.store(true, std::memory_order_relaxed); }
    // Python: Queue.join_thread(). No feeder thread exists, so there is nothing to wait for:
    // put() has already stored the item in shared memory.
    void join_thread() noexcept {}
    // Python: Queue.cancel_join_thread(). Nothing to cancel, for the same reason; kept so
    // ported code compiles, and no item can be lost by calling it.
    void cancel_join_thread() noexcept {}

    // Under spawn and forkserver a queue given to a child travels as its descriptor
    // (detail/fd_table.hpp). As in Python, it cannot be sent in a message: queues are shared
    // through inheritance.
    template <class Archive>
    void serialize(Archive& ar) {
        detail::serialize_fd(ar, "Queue", [&] { return state_->ring.fd(); },
                             [&](detail::posix::unique_fd fd) {
                                 state_ = std::make_shared<detail::queue_state>(
                                     std::move(fd), detail::queue_type_tag<T>());
                             });
    }

protected:
    struct adopt_tag {};
    Queue(adopt_tag, detail::posix::unique_fd fd)
        : state_(std::make_shared<detail::queue_state>(std::move(fd), detail::queue_type_tag<T>())) {}

    detail::shared_ring& ring() const {
        if (state_->closed.load(std::memory_order_relaxed)) [[unlikely]]
            throw ValueError("Queue is closed");
        return state_->ring;
    }

    std::shared_ptr<detail::queue_state> state_;

    friend struct detail::queue_access;
};

// Python: multiprocessing.JoinableQueue(maxsize=0): a Queue that counts unfinished tasks.
template <class T>
class JoinableQueue : public Queue<T> {
public:
    explicit JoinableQueue(std::int64_t maxsize = 0) : Queue<T>(maxsize) {}

    // Python: JoinableQueue.task_done(); one call per item got. Throws mp::ValueError when
    // called more times than items were put.
    void task_done() {
        if (!this->ring().task_done()) throw ValueError("task_done() called too many times");
    }
    // Python: JoinableQueue.join(): blocks until every item put has been task_done()'d.
    void join() { this->ring().join(detail::forever); }
    // join() with a timeout; returns false when it passes first.
    template <detail::timeout_like Timeout>
    bool join(Timeout timeout) {
        return this->ring().join(detail::deadline_after(timeout));
    }

private:
    using typename Queue<T>::adopt_tag;
    JoinableQueue(adopt_tag tag, detail::posix::unique_fd fd) : Queue<T>(tag, std::move(fd)) {}
    friend struct detail::queue_access;
};

// Python: multiprocessing.SimpleQueue(): an unbounded queue with only get, put, empty, close.
template <class T>
class SimpleQueue {
    static_assert((detail::require_serializable<T>(), true));

public:
    using value_type = T;

    SimpleQueue() : state_(std::make_shared<detail::queue_state>(0, detail::queue_type_tag<T>())) {}

    // Python: SimpleQueue.put(obj)
    void put(const T& obj) { detail::put_item(ring(), obj, detail::forever); }
    // Python: SimpleQueue.get()
    T get() { return *detail::get_item<T>(ring(), detail::forever); }
    // Python: SimpleQueue.empty()
    bool empty() const { return state_->ring.empty(); }
    // Python: SimpleQueue.close(); put()/get() here then throw mp::ValueError.
    void close() noexcept { state_->closed.store(true, std::memory_order_relaxed); }

    // Under spawn and forkserver a queue given to a child travels as its descriptor
    // (detail/fd_table.hpp). As in Python, it cannot be sent in a message: queues are shared
    // through inheritance.
    template <class Archive>
    void serialize(Archive& ar) {
        detail::serialize_fd(ar, "SimpleQueue", [&] { return state_->ring.fd(); },
                             [&](detail::posix::unique_fd fd) {
                                 state_ = std::make_shared<detail::queue_state>(
                                     std::move(fd), detail::queue_type_tag<T>());
                             });
    }

private:
    struct adopt_tag {};
    SimpleQueue(adopt_tag, detail::posix::unique_fd fd)
        : state_(std::make_shared<detail::queue_state>(std::move(fd), detail::queue_type_tag<T>())) {}

    detail::shared_ring& ring() const {
        if (state_->closed.load(std::memory_order_relaxed)) [[unlikely]]
            throw ValueError("Queue is closed");
        return state_->ring;
    }

    std::shared_ptr<detail::queue_state> state_;
    friend struct detail::queue_access;
};

namespace detail {

// White-box access (tests, other modules): the ring and descriptor behind a handle, and a
// handle rebuilt from a descriptor (its item type must match).
struct queue_access {
    template <class Q>
    static int fd(const Q& q) noexcept {
        return q.state_->ring.fd();
    }
    template <class Q>
    static shared_ring& ring(const Q& q) noexcept {
        return q.state_->ring;
    }
    template <class Q>
    static Q adopt(posix::unique_fd fd) {
        return Q(typename Q::adopt_tag{}, std::move(fd));
    }
};

}  // namespace detail

}  // namespace multiprocessing
