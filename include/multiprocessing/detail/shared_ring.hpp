// The byte-level queue under Queue, SimpleQueue, JoinableQueue and Pool: a ring of records in
// one anonymous shared file, with one robust mutex for the producers and one for the consumers.
//
// Layout of the file: a header page (locks, state, futex words; mapped once, never remapped),
// then the data ring, a power of two of bytes, mapped separately so that it can grow. A record
// is [u64 word: payload length << 8 | tag][payload, padded to 8 bytes]; a payload may wrap
// around the end of the ring, so a reader sees it as one or two pieces (ring_span). The tag is
// the record's index modulo 128; the word after the last record always holds `free_mark`.
//
// `head` and `tail` count the bytes ever consumed and produced, `consumed` and `produced` the
// records; a byte's place in the ring is its count modulo the capacity. Growing keeps that rule:
// the bytes whose place moves are copied into the new part of the file, then the new capacity
// is committed.
//
// Two locks: producers serialise on `put_lock`, consumers on `get_lock`, so that a producer and
// a consumer never wait for each other; between the two sides the ring is a single-producer
// single-consumer ring. Each side keeps its state on its own cache line, with a hint of the
// other side's (never ahead of it), so that the line of the other side is read only when the
// hint says the ring is full or empty. Moving bytes (growth, shrinking) takes both locks, always
// put_lock first. A thread that uses a side alone keeps its lock between operations as a lease
// (detail/lease_lock.hpp), so that a sole producer and a sole consumer run without a single
// atomic read-modify-write.
//
// Crash consistency: every operation prepares its effect in free space (or in new space) and
// then commits it with one store: `produced` for a put, `consumed` for a get, `capacity` for a
// growth. `tail` (`head`) follows; a process killed between the two leaves it one record behind,
// which whoever takes the lock over from a dead owner (lock_result::owner_died) sees from the
// tag of the word there (the index of the last record committed, not the next one nor
// `free_mark`) and repairs. Any other crash leaves the last committed state, whole.
//
// Waiting: a waiter sets the top bit of a futex word under the lock of the other side (a
// consumer under put_lock, a producer under get_lock) and sleeps on it; whoever makes progress
// possible sees the bit, bumps the word and wakes all sleepers, still under its lock and before
// its commit, so a waker killed half-way either woke them or committed nothing. A put or get
// with no sleepers makes no system call.
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

#include "lease_lock.hpp"
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

    // Producers' own line: written under put_lock (not_empty also by consumers arming it).
    alignas(64) lease_lock put_lock;
    std::atomic<std::uint32_t> not_empty{0};   // futex words: sequence | waiting_bit
    std::atomic<std::uint32_t> put_repair{0};  // a producer died holding put_lock
    std::atomic<std::uint64_t> tail{0};        // bytes ever produced
    std::atomic<std::uint64_t> seen_consumed{0};  // hints: never ahead of the consumers
    std::atomic<std::uint64_t> seen_head{0};
    // What consumers poll, on its own line so that their polling leaves the line above alone.
    alignas(64) std::atomic<std::uint64_t> produced{0};  // records ever put: a put's commit
    // Consumers' own line: written under get_lock (not_full also by producers arming it).
    alignas(64) lease_lock get_lock;
    std::atomic<std::uint32_t> not_full{0};
    std::atomic<std::uint32_t> get_repair{0};     // a consumer died holding get_lock
    std::atomic<std::uint64_t> seen_produced{0};  // hint: never ahead of the producers
    std::atomic<std::uint64_t> tasks_done{0};     // JoinableQueue.task_done() calls
    std::atomic<std::uint32_t> all_done{0};
    // What producers read when their hints say the ring is full.
    alignas(64) std::atomic<std::uint64_t> consumed{0};  // records ever got: a get's commit
    std::atomic<std::uint64_t> head{0};                  // bytes ever consumed
    // Read by every operation, written only under both locks.
    alignas(64) std::atomic<std::uint64_t> capacity{0};  // bytes in the ring, a power of two
    // Immutable after creation.
    std::uint64_t magic = magic_value;
    std::uint64_t type_tag = 0;
    std::uint64_t maxsize = 0;  // items; 0 = unbounded
    std::uint64_t data_offset = 0;
    std::uint64_t initial_capacity = 0;
    std::uint64_t shrink_threshold = 0;
    std::int64_t shrink_delay_ns = 0;
    // Under both locks, off the hot lines.
    alignas(64) std::atomic<std::int64_t> last_growth_ns{0};  // monotonic
    std::atomic<std::uint64_t> recoveries{0};  // locks taken over from a dead owner
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(offsetof(ring_header, seen_head) + 8 <= 64);
static_assert(offsetof(ring_header, all_done) + 4 <= 3 * 64);
static_assert(sizeof(ring_header) <= 4096);

class shared_ring {
public:
    static constexpr std::size_t default_capacity = 64 * 1024;
    static constexpr std::size_t record_header = sizeof(std::uint64_t);
    // The word after the last record (no record's word has bit 7 set).
    static constexpr std::uint64_t free_mark = 0x80;
    static constexpr std::uint64_t max_payload = (std::uint64_t(1) << 56) - 1;
    // The adaptive spin, as Connection's: a waiter polls for up to spin_limit_ns (yielding
    // the CPU after spin_without_yield_ns, in case the process it waits for shares it) before
    // it sleeps in the kernel, but only while this process's recent waits were that short,
    // and never when it may use a single CPU (re-read every 256 waits).
    static constexpr std::int64_t spin_limit_ns = 50'000;
    static constexpr std::int64_t spin_without_yield_ns = 5'000;
    static constexpr std::int64_t short_sleep_ns = 200'000;
    static constexpr std::int64_t longest_sample_ns = 1'000'000;
    // A spinning waiter polls the other side's line at once, then twice as late each time, up
    // to every poll_interval_ns; a consumer of a stream (waiting::stream) polls that seldom from
    // the start. Each poll pulls the line away from the side that writes it: polling flat out
    // halves the throughput of a queue whose consumer keeps up with its producer, and polling
    // seldom adds to the latency of one item.
    static constexpr std::int64_t poll_interval_ns = 500;
    static constexpr std::uint64_t streaming_batch = 4;
    // A producer that put a record this big while this much was queued waits (up to
    // pace_ns, after releasing its lock) until a consumer takes a record. A producer faster
    // than its consumers would otherwise grow the ring with every big item it puts, paying a
    // copy and, in every process, a page fault for every page of each new mapping.
    static constexpr std::uint64_t pace_size = 64u << 10;
    static constexpr std::uint64_t pace_backlog = 8u << 20;
    static constexpr std::int64_t pace_ns = 200'000;
    // A ring at least this big that empties at least shrink_delay_ns after its last growth
    // goes back to its initial size, giving the memory of a burst back to the system. (The
    // delay keeps a steady stream of big items from shrinking and regrowing the ring, with
    // all the page faults that costs, every time a consumer catches up.)
    static constexpr std::uint64_t default_shrink_threshold = 64u << 20;
    static constexpr std::int64_t default_shrink_delay_ns = 1'000'000'000;
    // The least an operation waits for a side's lock held by a live process, whatever its
    // timeout: critical sections are copies, so that put_nowait() reports Full (get_nowait()
    // Empty) when the queue is full (empty), not because another process was copying an item.
    static constexpr std::int64_t lock_grace_ns = 20'000'000;

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
        remap(put_view_, capacity);
        word_at(put_view_, 0).store(free_mark, std::memory_order_relaxed);
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
    // Whether this thread holds the producers' (consumers') lock as a lease now.
    bool leased(bool producers) const noexcept {
        const lease_lock& l = producers ? h_->put_lock : h_->get_lock;
        return l.leased_by(lease_lock::self_id());
    }
    static constexpr std::uint64_t record_size(std::uint64_t n) noexcept {
        return record_header + ((n + 7) & ~std::uint64_t(7));
    }

    // Appends one record of `n` bytes, filled by `fill(const ring_span&)`, waiting for room
    // (maxsize), and for the producers' lock, until `deadline` (monotonic ns; forever = -1).
    // Returns false on timeout.
    // If `fill` throws, nothing is added and the exception propagates.
    template <class Fill>
    bool put(std::size_t n, Fill&& fill, detail::deadline deadline) {
        if (n > max_payload) throw std::length_error("multiprocessing: queue item too large");
        ring_header& h = *h_;
        const std::uint64_t rec = record_size(n);
        const std::uint64_t maxsize = h.maxsize;
        waiting w;
        for (;;) {
            {
                locked g(*this, put_side, may_lease, deadline);
                if (!g) return w.timed_out(*this);
                const std::uint64_t produced = h.produced.load(std::memory_order_relaxed);
                if (maxsize == 0 || has_room(produced, maxsize)) {
                    w.done(*this);
                    const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
                    // Room for the record and the free mark after it? (The hint may lag the
                    // head by more than the capacity.)
                    const std::uint64_t need = rec + record_header;
                    if (tail - h.seen_head.load(std::memory_order_relaxed) + need >
                        put_view_.capacity) {
                        const std::uint64_t head = h.head.load(std::memory_order_acquire);
                        h.seen_head.store(head, std::memory_order_relaxed);
                        if (tail - head + need > put_view_.capacity && !grow(need, deadline))
                            return w.timed_out(*this);
                    }
                    fill(span_at(put_view_, tail + record_header, n));
                    word_at(put_view_, tail + rec).store(free_mark, std::memory_order_relaxed);
                    word_at(put_view_, tail).store(n << 8 | (produced & 0x7f),
                                                   std::memory_order_relaxed);
                    MP_RING_FAULT_POINT(put_written);
                    notify(h.not_empty);
                    h.produced.store(produced + 1, std::memory_order_release);  // the commit
                    MP_RING_FAULT_POINT(put_committed);
                    h.tail.store(tail + rec, std::memory_order_relaxed);
                    if (rec >= pace_size &&
                        tail + rec - h.seen_head.load(std::memory_order_relaxed) >= pace_backlog)
                        [[unlikely]] {
                        g.unlock();
                        pace(h.seen_head.load(std::memory_order_relaxed));
                    }
                    return true;
                }
            }
            if (expired(deadline)) return w.timed_out(*this);
            if (!w.spun()) {
                w.spin(*this, [&] { return count() < maxsize; }, deadline);
                continue;
            }
            // Sleep until a get makes room: armed under the consumers' lock, which every
            // get holds when it looks for sleepers.
            std::uint32_t armed;
            {
                locked g(*this, get_side, no_lease, deadline);
                if (!g) return w.timed_out(*this);
                if (count() < maxsize) continue;
                armed = arm(h.not_full);
            }
            posix::futex_wait(&h.not_full, armed, deadline);
        }
    }

    // Removes the oldest record, handing it to `take(const ring_span&)` first, waiting for one
    // (and for the consumers' lock) until `deadline`. Returns false on timeout. If `take`
    // throws, the record is still removed (as Python drops an item it cannot unpickle) and the
    // exception propagates.
    template <class Take>
    bool get(Take&& take, detail::deadline deadline) {
        ring_header& h = *h_;
        waiting w;
        for (;;) {
            {
                locked g(*this, get_side, may_lease, deadline);
                if (!g) return w.timed_out(*this);
                const std::uint64_t consumed = h.consumed.load(std::memory_order_relaxed);
                std::uint64_t produced = h.seen_produced.load(std::memory_order_relaxed);
                if (produced == consumed) {
                    produced = h.produced.load(std::memory_order_acquire);
                    h.seen_produced.store(produced, std::memory_order_relaxed);
                }
                if (produced != consumed) {
                    if (w.spun())
                        stats_.streaming.store(w.stream(produced - consumed),
                                               std::memory_order_relaxed);
                    w.done(*this);
                    const std::uint64_t head = h.head.load(std::memory_order_relaxed);
                    const std::uint64_t len = checked_length(
                        word_at(get_view_, head).load(std::memory_order_relaxed) >> 8);
                    std::exception_ptr error;
                    try {
                        take(span_at(get_view_, head + record_header, len));
                    } catch (...) {
                        error = std::current_exception();
                    }
                    MP_RING_FAULT_POINT(get_taken);
                    if (h.maxsize) notify(h.not_full);
                    h.consumed.store(consumed + 1, std::memory_order_release);  // the commit
                    MP_RING_FAULT_POINT(get_committed);
                    h.head.store(head + record_size(len), std::memory_order_release);
                    if (consumed + 1 == produced && get_view_.capacity >= h.shrink_threshold)
                        [[unlikely]]
                        shrink_from_get_side(g.self());
                    if (error) {
                        g.unlock();
                        std::rethrow_exception(error);
                    }
                    return true;
                }
            }
            if (expired(deadline)) return w.timed_out(*this);
            if (!w.spun()) {
                w.spin(*this, [&] { return count() > 0; }, deadline,
                       stats_.streaming.load(std::memory_order_relaxed));
                continue;
            }
            // Sleep until a put: armed under the producers' lock, which every put holds when
            // it looks for sleepers. (A consumer going idle is also when a big ring that a
            // producer's lease kept from shrinking can shrink.)
            std::uint32_t armed;
            {
                locked g(*this, put_side, no_lease, deadline);
                if (!g) return w.timed_out(*this);
                if (count() > 0) continue;
                armed = arm(h.not_empty);
                if (h.capacity.load(std::memory_order_relaxed) >= h.shrink_threshold) {
                    locked both(*this, get_side, no_lease, deadline);
                    if (both) shrink_if_idle();
                }
            }
            posix::futex_wait(&h.not_empty, armed, deadline);
        }
    }

    // Exact: both counts are commits. (Read consumers first: never negative.)
    std::size_t qsize() const noexcept { return std::size_t(count()); }
    bool empty() const noexcept { return count() == 0; }
    bool full() const noexcept { return h_->maxsize != 0 && count() >= h_->maxsize; }
    // Bytes in the data ring now.
    std::size_t capacity() const noexcept {
        return std::size_t(h_->capacity.load(std::memory_order_acquire));
    }

    // Python: JoinableQueue.task_done(). Returns false when no task is unfinished.
    bool task_done() {
        locked g(*this, get_side);
        const std::uint64_t done = h_->tasks_done.load(std::memory_order_relaxed);
        const std::uint64_t unfinished = h_->produced.load(std::memory_order_acquire) - done;
        if (unfinished == 0) return false;
        if (unfinished == 1) notify(h_->all_done);
        h_->tasks_done.store(done + 1, std::memory_order_release);
        return true;
    }

    // Python: JoinableQueue.join(). Returns false when `deadline` passes first.
    bool join(detail::deadline deadline) {
        for (;;) {
            std::uint32_t armed;
            {
                locked g(*this, get_side, no_lease, deadline);
                if (!g) return false;
                if (unfinished_tasks() == 0) return true;
                if (expired(deadline)) return false;
                armed = arm(h_->all_done);
            }
            posix::futex_wait(&h_->all_done, armed, deadline);
        }
    }

    // Items put and not yet task_done()'d.
    std::size_t unfinished_tasks() const noexcept {
        const std::uint64_t done = h_->tasks_done.load(std::memory_order_acquire);
        return std::size_t(h_->produced.load(std::memory_order_acquire) - done);
    }

private:
    // This process's mapping of the data ring, one per side: each is touched only under its
    // side's lock, so a producer thread and a consumer thread of one process never race on it.
    struct view {
        posix::mapping map;
        std::byte* data = nullptr;
        std::uint64_t capacity = 0;
    };
    enum side_t : std::uint8_t { put_side, get_side };

    // Holds one side's lock (through this thread's lease if it has one), or nothing when
    // `deadline` passed first (false); on entry brings that side's mapping up to the committed
    // capacity and repairs what a dead owner left. Only the operations themselves may turn the
    // lock into a lease on release: a thread that takes the other side's lock to arm a wait or
    // to grow the ring is no user of that side.
    static constexpr bool may_lease = true, no_lease = false;
    class locked {
    public:
        locked(shared_ring& r, side_t side, bool lease = false, detail::deadline deadline = forever)
            : r_(r), side_(side), may_lease_(lease), me_(lease_lock::self_id()) {
            ring_header& h = *r_.h_;
            std::atomic<std::uint32_t>& repair = side == put_side ? h.put_repair : h.get_repair;
            if (lock().enter_leased(me_)) {
                leased_ = true;
            } else if (const lock_result got = lock().acquire(deadline, lock_grace_ns);
                       got != lock_result::acquired) [[unlikely]] {
                if (got == lock_result::timed_out) {
                    held_ = false;
                    return;
                }
                repair.store(1, std::memory_order_relaxed);  // kept if the remap fails
                h.recoveries.fetch_add(1, std::memory_order_relaxed);
            }
            view& v = side == put_side ? r_.put_view_ : r_.get_view_;
            try {
                const std::uint64_t cap = h.capacity.load(std::memory_order_acquire);
                if (cap != v.capacity) [[unlikely]] r_.remap(v, cap);
            } catch (...) {
                unlock();
                throw;
            }
            if (repair.load(std::memory_order_relaxed)) [[unlikely]] {
                r_.repair(v, side);
                repair.store(0, std::memory_order_relaxed);
            }
        }
        ~locked() { unlock(); }
        locked(const locked&) = delete;
        locked& operator=(const locked&) = delete;

        void unlock() noexcept {
            if (!held_) return;
            held_ = false;
            if (leased_) lock().leave_leased();
            else lock().release(me_, may_lease_);
        }
        std::uint64_t self() const noexcept { return me_; }
        explicit operator bool() const noexcept { return held_; }

    private:
        lease_lock& lock() const noexcept {
            return side_ == put_side ? r_.h_->put_lock : r_.h_->get_lock;
        }
        shared_ring& r_;
        side_t side_;
        bool may_lease_;
        bool leased_ = false;
        bool held_ = true;
        std::uint64_t me_;
    };

    std::uint64_t count() const noexcept {
        const std::uint64_t consumed = h_->consumed.load(std::memory_order_acquire);
        return h_->produced.load(std::memory_order_acquire) - consumed;
    }
    // Under put_lock: is there room below maxsize? Reads the consumers' line only when the
    // hint says no.
    bool has_room(std::uint64_t produced, std::uint64_t maxsize) noexcept {
        if (produced - h_->seen_consumed.load(std::memory_order_relaxed) < maxsize) return true;
        const std::uint64_t consumed = h_->consumed.load(std::memory_order_acquire);
        h_->seen_consumed.store(consumed, std::memory_order_relaxed);
        return produced - consumed < maxsize;
    }

    // Waits (bounded) until the consumers move the head past `head`.
    void pace(std::uint64_t head) const noexcept {
        const unsigned pauses = waiting::pauses_per_poll();
        const std::int64_t until = posix::monotonic_ns() + pace_ns;
        while (h_->head.load(std::memory_order_relaxed) == head &&
               posix::monotonic_ns() < until)
            for (unsigned k = pauses; k; --k) posix::cpu_relax();
    }

    // A length read from shared memory is checked before it is used.
    std::uint64_t checked_length(std::uint64_t len) const {
        if (record_size(len) + record_header > get_view_.capacity) [[unlikely]]
            throw std::runtime_error("multiprocessing: queue memory is corrupted");
        return len;
    }

    // The previous owner of `side`'s lock died. A committed record whose tail (head) was not
    // stored yet shows at tail (head) with the tag of the last committed index; anything else
    // there (the free mark, or an uncommitted record of the next index) means the state is
    // whole. Uncommitted work is garbage in free space.
    void repair(view& v, side_t side) noexcept {
        ring_header& h = *h_;
        std::atomic<std::uint64_t>& at = side == put_side ? h.tail : h.head;
        const std::uint64_t committed =
            (side == put_side ? h.produced : h.consumed).load(std::memory_order_acquire);
        const std::uint64_t pos = at.load(std::memory_order_relaxed);
        const std::uint64_t word = word_at(v, pos).load(std::memory_order_relaxed);
        if (committed != 0 && (word & 0xff) == ((committed - 1) & 0x7f) &&
            record_size(word >> 8) + record_header <= v.capacity)
            at.store(pos + record_size(word >> 8), std::memory_order_release);
    }

    void remap(view& v, std::uint64_t capacity) {
        adopt(v, posix::mapping(fd_.get(), std::size_t(capacity), std::size_t(h_->data_offset)),
              capacity);
    }
    // Switches `v` to mapping `m`. The old one is unmapped last, so that a child forked
    // meanwhile by another thread of this process never holds a pointer into an unmapped range.
    static void adopt(view& v, posix::mapping m, std::uint64_t capacity) noexcept {
        v.data = static_cast<std::byte*>(m.data());
        v.capacity = capacity;
        std::swap(v.map, m);
    }

    // Under put_lock: makes room for `need` bytes past the tail. Takes get_lock too, grows the
    // file, maps it, copies each byte whose place (its count modulo the capacity) changes,
    // then commits the capacity. Until that store the old state stands, whole. The consumers'
    // mappings catch up when they next take their lock.
    // False when `deadline` passed before get_lock was free.
    bool grow(std::uint64_t need, detail::deadline deadline) {
        ring_header& h = *h_;
        locked g(*this, get_side, no_lease, deadline);
        if (!g) return false;
        const std::uint64_t head = h.head.load(std::memory_order_relaxed);
        const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
        const std::uint64_t old_cap = put_view_.capacity;
        if (old_cap - (tail - head) >= need) return true;  // consumers made room meanwhile
        const std::uint64_t new_cap = std::max(old_cap * 2, std::bit_ceil(tail - head + need));
        // Also cuts a file left bigger by a grower that died: nothing maps past the commit.
        posix::resize_file(fd_.get(), std::size_t(h.data_offset + new_cap));
        view v;
        remap(v, new_cap);
        // The live bytes [head, tail) span at most two old-capacity blocks.
        for (std::uint64_t at = head; at < tail;) {
            const std::uint64_t block_end = (at | (old_cap - 1)) + 1;
            const std::uint64_t end = std::min(tail, block_end);
            const std::uint64_t from = at & (old_cap - 1), to = at & (new_cap - 1);
            if (from != to) std::memcpy(v.data + to, v.data + from, std::size_t(end - at));
            at = end;
        }
        word_at(v, tail).store(free_mark, std::memory_order_relaxed);
        std::swap(put_view_, v);
        MP_RING_FAULT_POINT(grow_copied);
        h.capacity.store(new_cap, std::memory_order_release);  // the commit
        MP_RING_FAULT_POINT(grow_committed);
        h.last_growth_ns.store(posix::monotonic_ns(), std::memory_order_relaxed);
        h.seen_head.store(head, std::memory_order_relaxed);
        return true;
    }

    // Under get_lock, after a get emptied the ring: shrinks it if the producers' lock is free
    // or this thread's lease (taking it in this order cannot wait, so cannot deadlock).
    void shrink_from_get_side(std::uint64_t me) noexcept {
        lease_lock& l = h_->put_lock;
        if (l.mutex.try_lock()) {
            if (!h_->put_repair.load(std::memory_order_relaxed)) shrink_if_idle();
            l.mutex.unlock();
        } else if (l.enter_leased(me)) {
            shrink_if_idle();
            l.leave_leased();
        }
    }

    // Under both locks: back to the initial capacity if the ring is empty and did not grow
    // lately. The commit comes first, so nobody maps past the end of the file once it is cut.
    void shrink_if_idle() noexcept {
        ring_header& h = *h_;
        const std::uint64_t cap = h.initial_capacity;
        const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
        if (h.capacity.load(std::memory_order_relaxed) <= cap ||
            posix::monotonic_ns() - h.last_growth_ns.load(std::memory_order_relaxed) <
                h.shrink_delay_ns ||
            h.produced.load(std::memory_order_relaxed) !=
                h.consumed.load(std::memory_order_relaxed) ||
            tail != h.head.load(std::memory_order_relaxed))
            return;
        // The first `cap` bytes of the file are the same at either size.
        word_at(get_view_, tail & (cap - 1)).store(free_mark, std::memory_order_relaxed);
        h.capacity.store(cap, std::memory_order_release);
        try {
            // A failure only leaves the file bigger.
            posix::resize_file(fd_.get(), std::size_t(h.data_offset + cap));
            remap(get_view_, cap);
        } catch (...) {
            // The next lock maps the committed size.
        }
    }

    // The record word at byte count `at` (8-aligned, so never split by the end of the ring).
    static std::atomic_ref<std::uint64_t> word_at(const view& v, std::uint64_t at) noexcept {
        return std::atomic_ref<std::uint64_t>(
            *std::launder(reinterpret_cast<std::uint64_t*>(v.data + (at & (v.capacity - 1)))));
    }
    // The `n` bytes at byte count `at`.
    static ring_span span_at(const view& v, std::uint64_t at, std::uint64_t n) noexcept {
        const std::uint64_t offset = at & (v.capacity - 1);
        const std::uint64_t first = std::min(n, v.capacity - offset);
        return {v.data + offset, std::size_t(first), v.data, std::size_t(n - first)};
    }

    static bool expired(detail::deadline deadline) noexcept {
        return deadline.expired();
    }

    // Under the lock that the waker will hold: announce a sleeper on `word`; returns the
    // value to sleep on.
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
        // The last wait for items ended with a batch of them there: a stream. Its waits poll
        // spaced out from the start; other waits start polling at once, and space out.
        std::atomic<bool> streaming{false};
    };

    // One put's or get's wait: a spin first (or not), then sleeps; what it took is learnt.
    class waiting {
    public:
        bool spun() const noexcept { return state_ != fresh; }

        template <class Ready>
        void spin(shared_ring& r, Ready&& ready, detail::deadline deadline,
                  bool spaced = false) noexcept {
            wait_stats& st = r.stats_;
            start_ = posix::monotonic_ns();
            state_ = skipped;
            if ((st.waits.fetch_add(1, std::memory_order_relaxed) & 255) == 0)
                st.several_cpus.store(posix::affinity_cpus() > 1, std::memory_order_relaxed);
            if (!st.several_cpus.load(std::memory_order_relaxed) ||
                st.average_ns.load(std::memory_order_relaxed) >= spin_limit_ns)
                return;
            state_ = missed;
            const unsigned pauses = pauses_per_poll();
            spaced_ = spaced;
            for (unsigned n = spaced ? pauses : 1;; n = std::min(2 * n, pauses)) {
                for (unsigned k = n; k; --k) posix::cpu_relax();
                ++polls_;
                if (ready()) {
                    state_ = caught;
                    return;
                }
                const std::int64_t now = posix::monotonic_ns();
                if (now - start_ >= spin_limit_ns || deadline.expired())
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

        // cpu_relax() takes from a few to some forty nanoseconds depending on the CPU. Timed
        // in short rounds, keeping the fastest: a round the scheduler interrupted would make
        // the polls too frequent for the life of the process.
        static unsigned pauses_per_poll() noexcept {
            static const unsigned n = [] {
                constexpr unsigned rounds = 16, per_round = 32;
                std::int64_t best = INT64_MAX;
                for (unsigned r = 0; r < rounds; ++r) {
                    const std::int64_t start = posix::monotonic_ns();
                    for (unsigned k = 0; k < per_round; ++k) posix::cpu_relax();
                    best = std::min(best, posix::monotonic_ns() - start);
                }
                const std::int64_t each = std::max<std::int64_t>(1, best / per_round);
                return unsigned(std::clamp<std::int64_t>(poll_interval_ns / each, 1, 1024));
            }();
            return n;
        }

    private:
        static void learn(shared_ring& r, std::int64_t sample) noexcept {
            auto& avg = r.stats_.average_ns;
            const std::int64_t a = avg.load(std::memory_order_relaxed);
            avg.store(a + (sample - a) / 4, std::memory_order_relaxed);
        }

        enum : std::uint8_t { fresh, skipped, missed, caught } state_ = fresh;
        bool spaced_ = false;
        unsigned polls_ = 0;
        std::int64_t start_ = 0;

    public:
        // After a wait for items, with `available` of them there now: is this a stream? A
        // spaced wait says so by the batch it found; a wait that polled at once, by an item
        // that came before the second poll. (Either test alone can lock a waiter into the
        // wrong pace: a ping-pong found in time by a spaced poll, or a stream that every
        // early poll slows down so much that it never piles up.)
        bool stream(std::uint64_t available) const noexcept {
            if (state_ != caught) return false;
            return spaced_ ? available >= streaming_batch : polls_ == 1;
        }
    };

    posix::unique_fd fd_;
    posix::mapping header_map_;
    ring_header* h_ = nullptr;
    view put_view_, get_view_;
    wait_stats stats_;
};

}  // namespace multiprocessing::detail
