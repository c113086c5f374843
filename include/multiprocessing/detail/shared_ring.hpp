// The byte-level queue under Queue, SimpleQueue and JoinableQueue: a ring of length-prefixed
// records in one anonymous shared file, guarded by a robust mutex.
//
// Layout of the file: a header page (lock, committed state, futex words; mapped once, never
// remapped), then the data ring (a power of two of bytes, mapped separately so it can grow).
// A record is [u64 payload length][payload, padded to 8 bytes]; its payload may wrap around the
// end of the ring, so a reader sees it as one or two pieces (ring_span).
//
// Crash consistency: every state change is written to the spare one of two state slots and
// published by one store of the slot index, the last step of each operation. A put writes the
// payload into free space first; a get reads it out first; a growth copies into the new part of
// the file first. A process killed at any point therefore leaves the last committed state, and
// the robust mutex hands the lock to the next user (lock_result::owner_died).
//
// Waiting: a waiter sets the top bit of a futex word under the lock and sleeps on it; whoever
// makes progress possible sees the bit, bumps the word and wakes all sleepers, still under the
// lock and before its commit, so a waker killed half-way either wakes them or commits nothing.
// Nobody sleeps on an uncontended path, so a put or get with no sleepers makes no system call.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <utility>

#include "mutex.hpp"
#include "posix/futex.hpp"
#include "posix/shm.hpp"
#include "posix/syscall.hpp"
#include "timeout.hpp"

namespace multiprocessing::detail {

// One record's payload in the ring: `first`, then `second` when it wraps around the end.
struct ring_span {
    std::byte* first = nullptr;
    std::size_t first_size = 0;
    std::byte* second = nullptr;
    std::size_t second_size = 0;

    std::size_t size() const noexcept { return first_size + second_size; }
    bool contiguous() const noexcept { return second_size == 0; }

    // Copies `n` bytes from `src` to the payload at `offset`.
    void write(std::size_t offset, const void* src, std::size_t n) const noexcept {
        const auto* s = static_cast<const std::byte*>(src);
        if (offset < first_size) {
            std::size_t k = std::min(n, first_size - offset);
            std::memcpy(first + offset, s, k);
            s += k;
            n -= k;
            offset = 0;
        } else {
            offset -= first_size;
        }
        if (n) std::memcpy(second + offset, s, n);
    }
    // Copies `n` bytes of the payload at `offset` to `dst`.
    void read(std::size_t offset, void* dst, std::size_t n) const noexcept {
        auto* d = static_cast<std::byte*>(dst);
        if (offset < first_size) {
            std::size_t k = std::min(n, first_size - offset);
            std::memcpy(d, first + offset, k);
            d += k;
            n -= k;
            offset = 0;
        } else {
            offset -= first_size;
        }
        if (n) std::memcpy(d, second + offset, n);
    }
};

// The committed state, one of two slots. All offsets are into the data ring.
struct ring_state {
    std::uint64_t capacity;    // bytes, a power of two
    std::uint64_t head;        // offset of the oldest record
    std::uint64_t used;        // bytes held by records
    std::uint64_t count;       // records
    std::uint64_t unfinished;  // JoinableQueue: items put and not yet task_done()
};

struct ring_header {
    static constexpr std::uint64_t magic_value = 0x6d702d7175657565;  // "mp-queue"
    static constexpr std::uint32_t waiting_bit = 0x8000'0000u;

    // Cache line 0: what every operation touches.
    robust_mutex mutex;
    std::atomic<std::uint32_t> active{0};     // index of the committed slot
    std::atomic<std::uint32_t> not_empty{0};  // futex words: sequence | waiting_bit
    std::atomic<std::uint32_t> not_full{0};
    std::atomic<std::uint32_t> all_done{0};
    std::uint32_t reserved = 0;
    ring_state slot[2];
    // Read without the lock by spinning waiters; written after each commit.
    alignas(64) std::atomic<std::uint64_t> count_hint{0};
    // Immutable after creation.
    alignas(64) std::uint64_t magic = magic_value;
    std::uint64_t type_tag = 0;
    std::uint64_t maxsize = 0;          // items; 0 = unbounded
    std::uint64_t data_offset = 0;      // where the ring starts in the file
    std::uint64_t initial_capacity = 0;
    std::atomic<std::uint64_t> recoveries{0};  // locks taken over from a dead owner
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(sizeof(ring_header) <= 4096);

class shared_ring {
public:
    static constexpr std::size_t default_capacity = 64 * 1024;
    static constexpr std::size_t record_header = sizeof(std::uint64_t);
    // How long a waiter polls before it sleeps in the kernel.
    static constexpr std::int64_t spin_ns = 20'000;
    // A ring this big goes back to its initial size whenever it empties, giving the memory of
    // a burst back to the system.
    static constexpr std::uint64_t shrink_threshold = 64u << 20;

    // A new ring. `maxsize` counts items (0 = unbounded); `type_tag` is checked by attach().
    explicit shared_ring(std::uint64_t maxsize = 0, std::uint64_t type_tag = 0,
                         std::size_t capacity = default_capacity) {
        const std::size_t header_size = posix::round_to_pages(sizeof(ring_header));
        capacity = std::bit_ceil(std::max(capacity, posix::page_size()));
        fd_ = posix::create_anonymous_file(header_size + capacity, "mp-queue");
        header_map_ = posix::mapping(fd_.get(), header_size);
        h_ = ::new (header_map_.data()) ring_header;
        h_->type_tag = type_tag;
        h_->maxsize = maxsize;
        h_->data_offset = header_size;
        h_->initial_capacity = capacity;
        h_->slot[0] = ring_state{capacity, 0, 0, 0, 0};
        h_->slot[1] = h_->slot[0];
        h_->active.store(0, std::memory_order_release);
        data_map_ = posix::mapping(fd_.get(), capacity, header_size);
        data_ = static_cast<std::byte*>(data_map_.data());
        mapped_capacity_ = capacity;
    }

    // Adopts the descriptor of an existing ring (how a spawned child gets its queue).
    shared_ring(posix::unique_fd fd, std::uint64_t type_tag) : fd_(std::move(fd)) {
        header_map_ = posix::mapping(fd_.get(), posix::round_to_pages(sizeof(ring_header)));
        h_ = std::launder(static_cast<ring_header*>(header_map_.data()));
        if (h_->magic != ring_header::magic_value)
            throw std::invalid_argument("multiprocessing: descriptor is not a queue");
        if (h_->type_tag != type_tag)
            throw std::invalid_argument("multiprocessing: queue was created for another item type");
    }

    shared_ring(const shared_ring&) = delete;
    shared_ring& operator=(const shared_ring&) = delete;

    int fd() const noexcept { return fd_.get(); }
    std::uint64_t maxsize() const noexcept { return h_->maxsize; }
    std::uint64_t recoveries() const noexcept {
        return h_->recoveries.load(std::memory_order_relaxed);
    }
    static constexpr std::uint64_t record_size(std::uint64_t n) noexcept {
        return record_header + ((n + 7) & ~std::uint64_t(7));
    }

    // Appends one record of `n` bytes, filled by `fill(const ring_span&)`, waiting for room
    // (maxsize) until `deadline` (monotonic ns; forever = -1). Returns false on timeout.
    // If `fill` throws, nothing is added and the exception propagates.
    template <class Fill>
    bool put(std::size_t n, Fill&& fill, std::int64_t deadline) {
        const std::uint64_t rec = record_size(n);
        const std::uint64_t maxsize = h_->maxsize;
        bool spun = false;
        std::uint32_t armed = 0;
        for (;;) {
            {
                locked g(*this);
                ring_state s = g.state();
                if (maxsize == 0 || s.count < maxsize) {
                    if (s.capacity - s.used < rec) grow(g, s, s.used + rec);
                    const std::uint64_t mask = s.capacity - 1;
                    const std::uint64_t tail = (s.head + s.used) & mask;
                    const std::uint64_t len = n;
                    std::memcpy(data_ + tail, &len, sizeof len);
                    fill(span_at((tail + record_header) & mask, n, s.capacity));
                    notify(h_->not_empty);
                    s.used += rec;
                    s.count += 1;
                    s.unfinished += 1;
                    g.commit(s);
                    return true;
                }
                if (expired(deadline)) return false;
                if (spun) armed = arm(h_->not_full);
            }
            if (!spun) {
                spun = true;
                spin([&] { return hint() < maxsize; }, deadline);
                continue;
            }
            posix::futex_wait(&h_->not_full, armed, deadline);
        }
    }

    // Removes the oldest record, handing it to `take(const ring_span&)` first, waiting for one
    // until `deadline`. Returns false on timeout. If `take` throws, the record is still
    // removed (as Python drops an item it cannot unpickle) and the exception propagates.
    template <class Take>
    bool get(Take&& take, std::int64_t deadline) {
        bool spun = false;
        std::uint32_t armed = 0;
        for (;;) {
            {
                locked g(*this);
                ring_state s = g.state();
                if (s.count > 0) {
                    const std::uint64_t mask = s.capacity - 1;
                    std::uint64_t len;
                    std::memcpy(&len, data_ + s.head, sizeof len);
                    std::exception_ptr error;
                    try {
                        take(span_at((s.head + record_header) & mask, len, s.capacity));
                    } catch (...) {
                        error = std::current_exception();
                    }
                    if (h_->maxsize) notify(h_->not_full);
                    const std::uint64_t rec = record_size(len);
                    s.used -= rec;
                    s.count -= 1;
                    // An empty ring starts over at offset 0: the hot bytes stay few.
                    s.head = s.used ? (s.head + rec) & mask : 0;
                    g.commit(s);
                    if (s.used == 0 && s.capacity >= shrink_threshold) [[unlikely]]
                        shrink(g, s);
                    if (error) {
                        g.unlock();
                        std::rethrow_exception(error);
                    }
                    return true;
                }
                if (expired(deadline)) return false;
                if (spun) armed = arm(h_->not_empty);
            }
            if (!spun) {
                spun = true;
                spin([&] { return hint() > 0; }, deadline);
                continue;
            }
            posix::futex_wait(&h_->not_empty, armed, deadline);
        }
    }

    std::size_t qsize() {
        locked g(*this);
        return std::size_t(g.state().count);
    }
    bool empty() { return qsize() == 0; }
    bool full() {
        if (h_->maxsize == 0) return false;
        return qsize() >= h_->maxsize;
    }
    // Bytes of the data ring now (grows, never shrinks).
    std::size_t capacity() {
        locked g(*this);
        return std::size_t(g.state().capacity);
    }

    // Python: JoinableQueue.task_done(). Returns false when no task is unfinished.
    bool task_done() {
        locked g(*this);
        ring_state s = g.state();
        if (s.unfinished == 0) return false;
        if (s.unfinished == 1) notify(h_->all_done);
        s.unfinished -= 1;
        g.commit(s);
        return true;
    }

    // Python: JoinableQueue.join(). Returns false when `deadline` passes first.
    bool join(std::int64_t deadline) {
        for (;;) {
            std::uint32_t armed;
            {
                locked g(*this);
                if (g.state().unfinished == 0) return true;
                if (expired(deadline)) return false;
                armed = arm(h_->all_done);
            }
            posix::futex_wait(&h_->all_done, armed, deadline);
        }
    }

    std::size_t unfinished_tasks() {
        locked g(*this);
        return std::size_t(g.state().unfinished);
    }

private:
    // Holds the mutex; on entry repairs what a dead owner left and brings this process's data
    // mapping up to the committed capacity.
    class locked {
    public:
        explicit locked(shared_ring& r) : r_(r) {
            if (r_.h_->mutex.lock() == lock_result::owner_died) r_.recover();
            state_ = r_.h_->slot[r_.h_->active.load(std::memory_order_acquire) & 1];
            if (state_.capacity != r_.mapped_capacity_) {
                try {
                    r_.remap(state_.capacity);
                } catch (...) {
                    r_.h_->mutex.unlock();
                    throw;
                }
            }
        }
        ~locked() { unlock(); }
        locked(const locked&) = delete;
        locked& operator=(const locked&) = delete;

        const ring_state& state() const noexcept { return state_; }
        // The single store that publishes `s`.
        void commit(const ring_state& s) noexcept {
            ring_header& h = *r_.h_;
            const std::uint32_t next = (h.active.load(std::memory_order_relaxed) & 1) ^ 1;
            h.slot[next] = s;
            h.active.store(next, std::memory_order_release);
            h.count_hint.store(s.count, std::memory_order_release);
            state_ = s;
        }
        void unlock() noexcept {
            if (held_) r_.h_->mutex.unlock();
            held_ = false;
        }

    private:
        shared_ring& r_;
        ring_state state_;
        bool held_ = true;
    };

    // The previous owner died holding the lock: its uncommitted work is garbage in free space,
    // so only the lock-free hint may be stale.
    void recover() noexcept {
        ring_header& h = *h_;
        const ring_state& s = h.slot[h.active.load(std::memory_order_acquire) & 1];
        h.count_hint.store(s.count, std::memory_order_release);
        h.recoveries.fetch_add(1, std::memory_order_relaxed);
    }

    void remap(std::uint64_t capacity) {
        posix::mapping m(fd_.get(), std::size_t(capacity), std::size_t(h_->data_offset));
        data_map_ = std::move(m);
        data_ = static_cast<std::byte*>(data_map_.data());
        mapped_capacity_ = capacity;
    }

    // Makes room for `need` bytes of records: grows the file, maps it, moves the wrapped part
    // of the records into the new space, commits. Old state stays valid until the commit.
    void grow(locked& g, ring_state& s, std::uint64_t need) {
        const std::uint64_t old_cap = s.capacity;
        const std::uint64_t new_cap = std::max(old_cap * 2, std::bit_ceil(need));
        // Shrinks a file left bigger by a grower that died: nothing maps past the commit.
        posix::grow_file(fd_.get(), std::size_t(h_->data_offset + new_cap));
        posix::mapping m(fd_.get(), std::size_t(new_cap), std::size_t(h_->data_offset));
        auto* d = static_cast<std::byte*>(m.data());
        if (s.head + s.used > old_cap) {
            // Wrapped: [head, old_cap) then [0, lower). Move the smaller part into new space.
            const std::uint64_t upper = old_cap - s.head;
            const std::uint64_t lower = s.used - upper;
            if (lower <= upper) {
                std::memcpy(d + old_cap, d, std::size_t(lower));
            } else {
                std::memcpy(d + new_cap - upper, d + s.head, std::size_t(upper));
                s.head = new_cap - upper;
            }
        }
        s.capacity = new_cap;
        data_map_ = std::move(m);
        data_ = d;
        mapped_capacity_ = new_cap;
        g.commit(s);
    }

    // Under the lock, with the ring empty: back to the initial capacity. The commit comes
    // first, so nobody maps past the end of the file once it is cut.
    void shrink(locked& g, ring_state s) noexcept {
        s.capacity = h_->initial_capacity;
        s.head = 0;
        g.commit(s);
        try {
            // ftruncate: grow_file cuts the file too (a failure only leaves it bigger).
            posix::grow_file(fd_.get(), std::size_t(h_->data_offset + s.capacity));
            remap(s.capacity);
        } catch (...) {
            // The next lock maps the committed size.
        }
    }

    ring_span span_at(std::uint64_t offset, std::uint64_t n, std::uint64_t capacity) const noexcept {
        const std::uint64_t first = std::min(n, capacity - offset);
        return {data_ + offset, std::size_t(first), data_, std::size_t(n - first)};
    }

    std::uint64_t hint() const noexcept {
        return h_->count_hint.load(std::memory_order_acquire);
    }

    static bool expired(std::int64_t deadline) noexcept {
        return deadline != forever && posix::monotonic_ns() >= deadline;
    }

    // Under the lock: announce a sleeper on `word`; returns the value to sleep on.
    static std::uint32_t arm(std::atomic<std::uint32_t>& word) noexcept {
        const std::uint32_t v = word.load(std::memory_order_relaxed) | ring_header::waiting_bit;
        word.store(v, std::memory_order_relaxed);
        return v;
    }
    // Under the lock, before the commit: wake every sleeper on `word`, if any.
    static void notify(std::atomic<std::uint32_t>& word) noexcept {
        const std::uint32_t v = word.load(std::memory_order_relaxed);
        if (v & ring_header::waiting_bit) [[unlikely]] {
            word.store((v + 1) & ~ring_header::waiting_bit, std::memory_order_release);
            posix::futex_wake_all(&word);
        }
    }

    // Polls `ready` for up to spin_ns (or the deadline). Returns whether it became true.
    template <class Ready>
    static bool spin(Ready&& ready, std::int64_t deadline) noexcept {
        if (deadline != forever && posix::monotonic_ns() >= deadline) return ready();
        std::int64_t start = -1;
        for (unsigned i = 0;; ++i) {
            if (ready()) return true;
            posix::cpu_relax();
            if ((i & 31) == 31) {
                const std::int64_t now = posix::monotonic_ns();
                if (start < 0) start = now;
                if (now - start >= spin_ns || (deadline != forever && now >= deadline))
                    return false;
            }
        }
    }

    posix::unique_fd fd_;
    posix::mapping header_map_;
    ring_header* h_ = nullptr;
    // This process's view of the data ring; touched only under the lock.
    posix::mapping data_map_;
    std::byte* data_ = nullptr;
    std::uint64_t mapped_capacity_ = 0;
};

}  // namespace multiprocessing::detail
