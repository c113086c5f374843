// The byte-level queue under Queue, SimpleQueue and JoinableQueue: a ring of length-prefixed
// records in one anonymous shared file, guarded by a robust mutex.
//
// Layout of the file: a header page (lock, state, futex words; mapped once, never remapped),
// then the data ring, a power of two of bytes, mapped separately so that it can grow. A record
// is [u64 payload length][payload, padded to 8 bytes]; a payload may wrap around the end of the
// ring, so a reader sees it as one or two pieces (ring_span).
//
// `head` and `tail` count the bytes ever consumed and produced; a byte's place in the ring is
// its count modulo the capacity. Growing keeps that rule: the bytes whose place moves are
// copied into the new part of the file, then the new capacity is committed.
//
// Crash consistency: every operation prepares its effect in free space (or in new space) and
// then commits it with one store: `tail` for a put, `head` for a get, `capacity` for a growth.
// `count` is updated right after; a process killed between the two leaves it off by one, so
// whoever takes the lock over from a dead owner (lock_result::owner_died) recounts the
// records. Any other crash leaves the last committed state, whole.
//
// Waiting: a waiter sets the top bit of a futex word under the lock and sleeps on it; whoever
// makes progress possible sees the bit, bumps the word and wakes all sleepers, still under the
// lock and before its commit, so a waker killed half-way either woke them or committed nothing.
// A put or get with no sleepers makes no system call. Everything an operation touches in the
// header shares one cache line.
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
#include <thread>
#include <utility>

#include "mutex.hpp"
#include "posix/futex.hpp"
#include "posix/process.hpp"
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

struct ring_header {
    static constexpr std::uint64_t magic_value = 0x6d702d7175657565;  // "mp-queue"
    static constexpr std::uint32_t waiting_bit = 0x8000'0000u;

    // Cache line 0: all that put and get touch. Written only under the lock; `count` is also
    // read without it by spinning waiters.
    robust_mutex mutex;
    std::atomic<std::uint32_t> not_empty{0};  // futex words: sequence | waiting_bit
    std::atomic<std::uint32_t> not_full{0};
    std::atomic<std::uint32_t> all_done{0};
    std::atomic<std::uint64_t> capacity{0};     // bytes in the ring, a power of two
    std::atomic<std::uint64_t> head{0};         // bytes ever consumed
    std::atomic<std::uint64_t> tail{0};         // bytes ever produced
    std::atomic<std::uint64_t> count{0};        // records in the ring
    std::atomic<std::uint64_t> outstanding{0};  // got, not yet task_done (two's complement)
    std::atomic<std::uint32_t> recount{0};      // set when a lock owner died: count is suspect
    // Immutable after creation.
    alignas(64) std::uint64_t magic = magic_value;
    std::uint64_t type_tag = 0;
    std::uint64_t maxsize = 0;  // items; 0 = unbounded
    std::uint64_t data_offset = 0;
    std::uint64_t initial_capacity = 0;
    std::uint64_t shrink_threshold = 0;
    std::int64_t shrink_delay_ns = 0;
    // Under the lock, off the hot line.
    std::atomic<std::int64_t> last_growth_ns{0};  // monotonic
    std::atomic<std::uint64_t> recoveries{0};     // locks taken over from a dead owner
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(offsetof(ring_header, recount) + 4 <= 64);
static_assert(sizeof(ring_header) <= 4096);

class shared_ring {
public:
    static constexpr std::size_t default_capacity = 64 * 1024;
    static constexpr std::size_t record_header = sizeof(std::uint64_t);
    // The adaptive spin, as Connection's: a waiter polls for up to spin_limit_ns (yielding
    // the CPU after spin_without_yield_ns, in case the process it waits for shares it) before
    // it sleeps in the kernel, but only while this process's recent waits were that short,
    // and never when it may use a single CPU (re-read every 256 waits).
    static constexpr std::int64_t spin_limit_ns = 50'000;
    static constexpr std::int64_t spin_without_yield_ns = 5'000;
    static constexpr std::int64_t short_sleep_ns = 200'000;
    static constexpr std::int64_t longest_sample_ns = 1'000'000;
    // A ring at least this big that empties at least shrink_delay_ns after its last growth
    // goes back to its initial size, giving the memory of a burst back to the system. (The
    // delay keeps a steady stream of big items from shrinking and regrowing the ring, with
    // all the page faults that costs, every time a consumer catches up.)
    static constexpr std::uint64_t default_shrink_threshold = 64u << 20;
    static constexpr std::int64_t default_shrink_delay_ns = 1'000'000'000;
    // A producer that put a record this big while this much was queued lets a process
    // waiting for the lock in before it may take it again (for up to handoff_ns). Otherwise,
    // with copies that outlast the lock's spinning, it keeps barging back in while consumers
    // sleep, and the ring grows (page faults and all) with everything it puts.
    static constexpr std::uint64_t handoff_size = 64u << 10;
    static constexpr std::uint64_t handoff_backlog = 8u << 20;
    static constexpr std::int64_t handoff_ns = 200'000;

    // A new ring. `maxsize` counts items (0 = unbounded); `type_tag` is checked on adoption.
    explicit shared_ring(std::uint64_t maxsize = 0, std::uint64_t type_tag = 0,
                         std::size_t capacity = default_capacity,
                         std::uint64_t shrink_threshold = default_shrink_threshold,
                         std::int64_t shrink_delay_ns = default_shrink_delay_ns) {
        const std::size_t header_size = posix::round_to_pages(sizeof(ring_header));
        capacity = std::bit_ceil(std::max(capacity, posix::page_size()));
        fd_ = posix::create_anonymous_file(header_size + capacity, "mp-queue");
        header_map_ = posix::mapping(fd_.get(), header_size);
        h_ = ::new (header_map_.data()) ring_header;
        h_->type_tag = type_tag;
        h_->maxsize = maxsize;
        h_->data_offset = header_size;
        h_->initial_capacity = capacity;
        h_->shrink_threshold = std::max<std::uint64_t>(shrink_threshold, capacity * 2);
        h_->shrink_delay_ns = shrink_delay_ns;
        h_->capacity.store(capacity, std::memory_order_release);
        remap(capacity);
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
        ring_header& h = *h_;
        const std::uint64_t rec = record_size(n);
        const std::uint64_t maxsize = h.maxsize;
        waiting w;
        std::uint32_t armed = 0;
        for (;;) {
            {
                locked g(*this);
                const std::uint64_t count = h.count.load(std::memory_order_relaxed);
                if (maxsize == 0 || count < maxsize) {
                    w.done(*this);
                    const std::uint64_t head = h.head.load(std::memory_order_relaxed);
                    const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
                    if (mapped_capacity_ - (tail - head) < rec) grow(tail - head + rec);
                    const std::uint64_t mask = mapped_capacity_ - 1;
                    const std::uint64_t len = n;
                    std::memcpy(data_ + (tail & mask), &len, sizeof len);
                    fill(span_at(tail + record_header, n));
                    notify(h.not_empty);
                    h.tail.store(tail + rec, std::memory_order_release);  // the commit
                    h.count.store(count + 1, std::memory_order_release);
                    if (rec >= handoff_size && tail + rec - head >= handoff_backlog) [[unlikely]]
                        g.hand_off();
                    return true;
                }
                if (expired(deadline)) return w.timed_out(*this);
                if (w.spun()) armed = arm(h.not_full);
            }
            if (!w.spun()) {
                w.spin(*this, [&] { return h.count.load(std::memory_order_relaxed) < maxsize; },
                       deadline);
                continue;
            }
            posix::futex_wait(&h.not_full, armed, deadline);
        }
    }

    // Removes the oldest record, handing it to `take(const ring_span&)` first, waiting for one
    // until `deadline`. Returns false on timeout. If `take` throws, the record is still
    // removed (as Python drops an item it cannot unpickle) and the exception propagates.
    template <class Take>
    bool get(Take&& take, std::int64_t deadline) {
        ring_header& h = *h_;
        waiting w;
        std::uint32_t armed = 0;
        for (;;) {
            {
                locked g(*this);
                const std::uint64_t count = h.count.load(std::memory_order_relaxed);
                if (count > 0) {
                    w.done(*this);
                    const std::uint64_t head = h.head.load(std::memory_order_relaxed);
                    std::uint64_t len;
                    std::memcpy(&len, data_ + (head & (mapped_capacity_ - 1)), sizeof len);
                    std::exception_ptr error;
                    try {
                        take(span_at(head + record_header, len));
                    } catch (...) {
                        error = std::current_exception();
                    }
                    if (h.maxsize) notify(h.not_full);
                    const std::uint64_t next = head + record_size(len);
                    h.head.store(next, std::memory_order_release);  // the commit
                    h.count.store(count - 1, std::memory_order_release);
                    h.outstanding.store(h.outstanding.load(std::memory_order_relaxed) + 1,
                                        std::memory_order_relaxed);
                    if (next == h.tail.load(std::memory_order_relaxed) &&
                        mapped_capacity_ >= h.shrink_threshold) [[unlikely]]
                        maybe_shrink();
                    if (error) {
                        g.unlock();
                        std::rethrow_exception(error);
                    }
                    return true;
                }
                if (expired(deadline)) return w.timed_out(*this);
                if (w.spun()) armed = arm(h.not_empty);
            }
            if (!w.spun()) {
                w.spin(*this, [&] { return h.count.load(std::memory_order_relaxed) > 0; },
                       deadline);
                continue;
            }
            posix::futex_wait(&h.not_empty, armed, deadline);
        }
    }

    std::size_t qsize() {
        locked g(*this);
        return std::size_t(h_->count.load(std::memory_order_relaxed));
    }
    bool empty() { return qsize() == 0; }
    bool full() {
        if (h_->maxsize == 0) return false;
        return qsize() >= h_->maxsize;
    }
    // Bytes in the data ring now.
    std::size_t capacity() {
        locked g(*this);
        return std::size_t(mapped_capacity_);
    }

    // Python: JoinableQueue.task_done(). Returns false when no task is unfinished.
    bool task_done() {
        locked g(*this);
        if (unfinished() == 0) return false;
        const std::uint64_t o = h_->outstanding.load(std::memory_order_relaxed);
        if (unfinished() == 1) notify(h_->all_done);
        h_->outstanding.store(o - 1, std::memory_order_release);
        return true;
    }

    // Python: JoinableQueue.join(). Returns false when `deadline` passes first.
    bool join(std::int64_t deadline) {
        for (;;) {
            std::uint32_t armed;
            {
                locked g(*this);
                if (unfinished() == 0) return true;
                if (expired(deadline)) return false;
                armed = arm(h_->all_done);
            }
            posix::futex_wait(&h_->all_done, armed, deadline);
        }
    }

    // Items put and not yet task_done()'d.
    std::size_t unfinished_tasks() {
        locked g(*this);
        return std::size_t(unfinished());
    }

private:
    // Holds the mutex; on entry brings this process's data mapping up to the committed
    // capacity and repairs what a dead owner left.
    class locked {
    public:
        explicit locked(shared_ring& r) : r_(r) {
            ring_header& h = *r_.h_;
            if (h.mutex.lock() == lock_result::owner_died) [[unlikely]]
                h.recount.store(1, std::memory_order_relaxed);  // kept if the remap fails
            try {
                const std::uint64_t cap = h.capacity.load(std::memory_order_acquire);
                if (cap != r_.mapped_capacity_) [[unlikely]] r_.remap(cap);
            } catch (...) {
                h.mutex.unlock();
                throw;
            }
            if (h.recount.load(std::memory_order_relaxed)) [[unlikely]] r_.recover();
        }
        ~locked() { unlock(); }
        locked(const locked&) = delete;
        locked& operator=(const locked&) = delete;

        void unlock() noexcept {
            if (held_) r_.h_->mutex.unlock();
            held_ = false;
        }

        // Unlocks, and if another process sleeps on the lock, waits (bounded) until it has it;
        // else yields the CPU, in case a consumer waits to run on this one.
        void hand_off() noexcept {
            robust_mutex& m = r_.h_->mutex;
            const bool waiters = m.word.load(std::memory_order_relaxed) & robust_mutex::waiters_bit;
            unlock();
            if (!waiters) {
                std::this_thread::yield();
                return;
            }
            const std::int64_t until = posix::monotonic_ns() + handoff_ns;
            for (unsigned i = 0;; ++i) {
                // Taken (by anyone but this thread, which is here).
                if (m.word.load(std::memory_order_relaxed) != 0) return;
                posix::cpu_relax();
                if ((i & 31) == 31 && posix::monotonic_ns() >= until) return;
            }
        }

    private:
        shared_ring& r_;
        bool held_ = true;
    };

    std::uint64_t unfinished() const noexcept {
        return h_->count.load(std::memory_order_relaxed) +
               h_->outstanding.load(std::memory_order_relaxed);
    }

    // The previous owner died holding the lock. Its uncommitted work is garbage in free space;
    // only `count` may be off by one, so count the records between head and tail again.
    void recover() noexcept {
        ring_header& h = *h_;
        const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
        const std::uint64_t mask = mapped_capacity_ - 1;
        std::uint64_t n = 0;
        for (std::uint64_t at = h.head.load(std::memory_order_acquire); at < tail; ++n) {
            std::uint64_t len;
            std::memcpy(&len, data_ + (at & mask), sizeof len);
            at += record_size(len);
        }
        h.count.store(n, std::memory_order_release);
        h.recoveries.fetch_add(1, std::memory_order_relaxed);
        h.recount.store(0, std::memory_order_relaxed);
    }

    void remap(std::uint64_t capacity) {
        adopt(posix::mapping(fd_.get(), std::size_t(capacity), std::size_t(h_->data_offset)),
              capacity);
    }
    // Switches to mapping `m`. The old one is unmapped last, so that a child forked meanwhile
    // by another thread of this process never holds a pointer into an unmapped range.
    void adopt(posix::mapping m, std::uint64_t capacity) noexcept {
        data_ = static_cast<std::byte*>(m.data());
        mapped_capacity_ = capacity;
        std::swap(data_map_, m);
    }

    // Makes room for `need` bytes of records: grows the file, maps it, copies each byte whose
    // place (its count modulo the capacity) changes, then commits the capacity. Until that
    // store the old state stands, whole.
    void grow(std::uint64_t need) {
        ring_header& h = *h_;
        const std::uint64_t old_cap = mapped_capacity_;
        const std::uint64_t new_cap = std::max(old_cap * 2, std::bit_ceil(need));
        // Also cuts a file left bigger by a grower that died: nothing maps past the commit.
        posix::resize_file(fd_.get(), std::size_t(h.data_offset + new_cap));
        posix::mapping m(fd_.get(), std::size_t(new_cap), std::size_t(h.data_offset));
        auto* d = static_cast<std::byte*>(m.data());
        // The live bytes [head, tail) span at most two old-capacity blocks.
        const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
        for (std::uint64_t at = h.head.load(std::memory_order_relaxed); at < tail;) {
            const std::uint64_t block_end = (at | (old_cap - 1)) + 1;
            const std::uint64_t end = std::min(tail, block_end);
            const std::uint64_t from = at & (old_cap - 1), to = at & (new_cap - 1);
            if (from != to) std::memcpy(d + to, d + from, std::size_t(end - at));
            at = end;
        }
        adopt(std::move(m), new_cap);
        h.capacity.store(new_cap, std::memory_order_release);  // the commit
        h.last_growth_ns.store(posix::monotonic_ns(), std::memory_order_relaxed);
    }

    // Under the lock, with the ring empty: back to the initial capacity, unless it grew
    // lately. The commit comes first, so nobody maps past the end of the file once it is cut.
    void maybe_shrink() noexcept {
        if (posix::monotonic_ns() - h_->last_growth_ns.load(std::memory_order_relaxed) <
            h_->shrink_delay_ns)
            return;
        const std::uint64_t cap = h_->initial_capacity;
        h_->capacity.store(cap, std::memory_order_release);
        try {
            // A failure only leaves the file bigger.
            posix::resize_file(fd_.get(), std::size_t(h_->data_offset + cap));
            remap(cap);
        } catch (...) {
            // The next lock maps the committed size.
        }
    }

    // The `n` bytes at byte count `at`.
    ring_span span_at(std::uint64_t at, std::uint64_t n) const noexcept {
        const std::uint64_t offset = at & (mapped_capacity_ - 1);
        const std::uint64_t first = std::min(n, mapped_capacity_ - offset);
        return {data_ + offset, std::size_t(first), data_, std::size_t(n - first)};
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

    // This process's record of how long its waits for items or room took.
    struct wait_stats {
        std::atomic<std::int64_t> average_ns{0};
        std::atomic<std::uint32_t> waits{0};
        std::atomic<bool> several_cpus{true};
    };

    // One put's or get's wait: a spin first (or not), then sleeps; what it took is learnt.
    class waiting {
    public:
        bool spun() const noexcept { return state_ != fresh; }

        template <class Ready>
        void spin(shared_ring& r, Ready&& ready, std::int64_t deadline) noexcept {
            wait_stats& st = r.stats_;
            start_ = posix::monotonic_ns();
            state_ = skipped;
            if ((st.waits.fetch_add(1, std::memory_order_relaxed) & 255) == 0)
                st.several_cpus.store(posix::affinity_cpus() > 1, std::memory_order_relaxed);
            if (!st.several_cpus.load(std::memory_order_relaxed) ||
                st.average_ns.load(std::memory_order_relaxed) >= spin_limit_ns)
                return;
            state_ = missed;
            for (unsigned i = 1;; ++i) {
                if (ready()) {
                    state_ = caught;
                    return;
                }
                if (i % 16) {
                    posix::cpu_relax();
                    continue;
                }
                const std::int64_t now = posix::monotonic_ns();
                if (now - start_ >= spin_limit_ns || (deadline != forever && now >= deadline))
                    return;
                if (now - start_ >= spin_without_yield_ns) std::this_thread::yield();
            }
        }

        // The operation went through: learn how long the wait was, if there was one.
        void done(shared_ring& r) noexcept {
            if (state_ == fresh) return;
            std::int64_t waited =
                std::min(posix::monotonic_ns() - start_, longest_sample_ns);
            // Did not spin and slept only briefly: a spin might have caught it (the sleep
            // includes the wake-up), so let the next wait spin again.
            if (state_ == skipped && waited < short_sleep_ns) waited = spin_limit_ns / 2;
            learn(r, waited);
        }
        bool timed_out(shared_ring& r) noexcept {
            if (state_ != fresh) learn(r, longest_sample_ns);
            return false;
        }

    private:
        static void learn(shared_ring& r, std::int64_t sample) noexcept {
            auto& avg = r.stats_.average_ns;
            const std::int64_t a = avg.load(std::memory_order_relaxed);
            avg.store(a + (sample - a) / 4, std::memory_order_relaxed);
        }

        enum : std::uint8_t { fresh, skipped, missed, caught } state_ = fresh;
        std::int64_t start_ = 0;
    };

    posix::unique_fd fd_;
    posix::mapping header_map_;
    ring_header* h_ = nullptr;
    // This process's view of the data ring; touched only under the lock.
    posix::mapping data_map_;
    std::byte* data_ = nullptr;
    std::uint64_t mapped_capacity_ = 0;
    wait_stats stats_;
};

}  // namespace multiprocessing::detail
