// Python: multiprocessing.synchronize. Lock, RLock, Semaphore, BoundedSemaphore, Event,
// Condition and Barrier shared between processes.
//
// Each class is a cheap copyable handle: copies, and the copies a forked child inherits, refer
// to the same object. The object's state lives in shared memory (detail::shared_slot: a slot of
// a shared arena, detail/heap.hpp) and holds only atomics and plain integers, so it works at
// any mapping address. Blocking waits
// are futex waits on words in that region, never pthread condition variables, which wedge when
// a waiter is killed.
//
// Every lock is Lockable (lock, unlock, try_lock, try_lock_for, try_lock_until), so
// std::scoped_lock and std::unique_lock are the C++ form of Python's `with lock:`.
//
// Under spawn and forkserver a handle passed to a child as an argument travels as the
// descriptor of its arena and its place there (detail/heap.hpp, detail/fd_table.hpp); the
// child maps the same object, each arena once. Sent in a
// message (a Queue, a Pipe), a handle throws SerializationError, as Python refuses to pickle a
// Lock outside process start. A Barrier's action travels when it is a function pointer, a
// captureless lambda or a serializable function object (Python: when it can be pickled).
//
// Owner death, where Python deadlocks: a process that dies holding a Lock, an RLock or a
// Condition's lock does not block the others forever. The next acquirer (within about 50 ms of
// the death) gets the lock, and previous_owner_died() is true until it releases it, so it can
// repair the data the lock protects.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include <unistd.h>

#include "detail/mutex.hpp"
#include "detail/posix/futex.hpp"
#include "detail/fd_table.hpp"
#include "detail/heap.hpp"
#include "detail/posix/shm.hpp"
#include "detail/runtime.hpp"
#include "detail/task.hpp"
#include "detail/timeout.hpp"
#include "errors.hpp"
#include "serialization.hpp"

namespace multiprocessing {

class Lock;
class RLock;

namespace detail {

// A deadline that has always passed: try once, never block (Python's block=False).
inline constexpr deadline try_only = deadline::poll_once();

// The longest a waiter sleeps before looking again. A process killed between changing a word
// and waking the sleepers then delays them by at most this, instead of stranding them.
inline constexpr std::int64_t wait_slice_ns = robust_mutex::liveness_check_ns;

// This thread's kernel id (unique system-wide among live threads, unlike pthread_self()),
// cached per thread. A forked child's only thread inherits the forking thread's cache, so the
// cache remembers which process filled it.
inline int this_tid() noexcept {
    struct cache {
        int pid = 0;
        int tid = 0;
    };
    thread_local cache c;
    int pid = self_pid();
    if (c.pid != pid) [[unlikely]] {
        c.tid = int(::gettid());
        c.pid = pid;
    }
    return c.tid;
}


inline bool passed(detail::deadline deadline) noexcept { return deadline.expired(); }

// Sleeps while *word == expected, for at most one wait slice and never past `deadline`.
// Returns false, without sleeping, once the deadline has passed; callers re-check and loop.
inline bool wait_on(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                    detail::deadline deadline) noexcept {
    if (deadline.expired()) return false;
    auto until = earlier(deadline, detail::deadline::at_ns(posix::monotonic_ns() + wait_slice_ns));
    posix::futex_wait(word, expected, until);
    return true;
}

// Takes over a mutex whose owner died; used where robust_mutex::lock would not look (a try,
// or a deadline that passed before its first liveness check).
inline lock_result try_recover(robust_mutex& m) noexcept {
    std::uint32_t seen = m.word.load(std::memory_order_relaxed);
    int owner = int(seen & robust_mutex::pid_mask);
    if (owner == 0) return m.try_lock() ? lock_result::acquired : lock_result::timed_out;
    if (owner != self_pid() && posix::process_gone(owner) &&
        m.word.compare_exchange_strong(
            seen, std::uint32_t(self_pid()) | (seen & robust_mutex::waiters_bit),
            std::memory_order_acquire, std::memory_order_relaxed))
        return lock_result::owner_died;
    return lock_result::timed_out;
}

// robust_mutex::lock with our deadline convention (try_only = a try that still recovers a
// lock from a dead owner).
inline lock_result lock_until(robust_mutex& m, detail::deadline deadline) noexcept {
    if (m.try_lock()) [[likely]] return lock_result::acquired;
    if (passed(deadline)) return try_recover(m);
    return m.lock(deadline);
}

// A handle's serialize hook, for every direction: `what` names the handle in the error when no
// start record is being written or read (a handle sent in a message).
template <class Archive, class... Parts>
void travel(Archive& ar, const char* what, Parts&... parts) {
    if (!fd_table::current()) no_fd_table(what);
    ar(parts...);
}

// A copyable handle to a T in shared memory: copies refer to the same object, as a Python
// reference does. A small T takes a slot of a shared arena (detail/heap.hpp), a bigger one a
// region of its own; a Value's own lock shares the Value's slot, on the same cache line as the
// value, so a locked update moves one line between CPUs, not two. T must be usable from
// several processes at once (atomics, no pointers into a process's own memory).
template <class T>
class shared_slot {
public:
    template <class... Args>
    static shared_slot create(Args&&... args) {
        return emplace(heap::allocate(sizeof(T), alignof(T)), 0, std::forward<Args>(args)...);
    }
    // Constructs the T `offset` bytes into `b` (which the caller sized for it).
    template <class... Args>
    static shared_slot emplace(const heap::block& b, std::size_t offset, Args&&... args) {
        shared_slot s;
        s.ptr_ = ::new (static_cast<char*>(b.region->data()) + b.offset + offset)
            T(std::forward<Args>(args)...);
        s.region_ = b.region;
        return s;
    }

    T* get() const noexcept { return ptr_; }
    T* operator->() const noexcept { return ptr_; }
    T& operator*() const noexcept { return *ptr_; }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }
    // Where the T lies: its region (shared by the objects of one arena) and the offset in it.
    std::size_t offset() const noexcept {
        return std::size_t(reinterpret_cast<char*>(ptr_) - static_cast<char*>(region_->data()));
    }
    const std::shared_ptr<posix::region>& region() const noexcept { return region_; }
    heap::block place() const { return {region_, offset()}; }

    // The T that another handle placed at `p` (a spawned child's side; nothing is constructed).
    // Throws SerializationError when it would lie outside its region or its arena slot.
    static shared_slot attach(heap::block p) {
        const std::size_t size = p.region->map.size();
        const bool fits = p.region->arena
                              ? p.offset % heap::slot_size + sizeof(T) <= heap::slot_payload
                              : p.offset <= size && size - p.offset >= sizeof(T);
        if (!fits || p.offset % alignof(T) != 0)
            throw SerializationError("multiprocessing: a shared object lies outside its region");
        shared_slot s;
        s.ptr_ = std::launder(reinterpret_cast<T*>(static_cast<char*>(p.region->data()) + p.offset));
        s.region_ = std::move(p.region);
        return s;
    }

    // Under spawn and forkserver: where the T lies (detail/heap.hpp); the child maps its
    // region, once per arena. Owners call travel() first, which names them.
    template <class Archive>
    void serialize(Archive& ar) {
        heap::block p;
        if constexpr (Archive::is_loading) {
            heap::serialize_block(ar, p, "shared object");
            *this = attach(std::move(p));
        } else {
            p = place();
            heap::serialize_block(ar, p, "shared object");
        }
    }

private:
    std::shared_ptr<posix::region> region_;
    T* ptr_ = nullptr;
};

// The name Semaphore, Event, Condition and Barrier use.
template <class T>
using shared_object = shared_slot<T>;

// The private hooks Condition, AnyLock and the Lockable mixin use.
struct lock_access {
    template <class L>
    static bool acquire_until(const L& l, detail::deadline deadline) {
        return l.acquire_until(deadline);
    }
    template <class L>
    static bool is_owned(const L& l) noexcept {
        return l.is_owned();
    }
    // Releases every level of an owned lock (an RLock may be held recursively) for a
    // Condition wait; restore() takes it back at the same depth.
    template <class L>
    static std::uint32_t release_all(const L& l) {
        return l.release_all();
    }
    template <class L>
    static void restore(const L& l, std::uint32_t depth) {
        l.restore(depth);
    }
    // A Lock or RLock whose state was placed by the caller (see shared_slot).
    template <class L, class Slot>
    static L adopt(Slot slot) {
        return L(std::move(slot));
    }
    // Where a Lock's or an RLock's state lives.
    template <class L>
    static const auto& slot(const L& l) noexcept {
        return l.s_;
    }
};

// acquire()/release() in Python's shapes and the Lockable names std::scoped_lock and
// std::unique_lock call, for any D with acquire_until(deadline) and release().
template <class D>
class lockable {
public:
    // Python: acquire(block=True, timeout=None); true when acquired.
    bool acquire(bool block = true) const {
        return lock_access::acquire_until(self(), block ? forever : try_only);
    }
    // Python: acquire(block, timeout); the timeout is ignored when block is false, as in Python.
    template <timeout_like T>
    bool acquire(bool block, T timeout) const {
        return lock_access::acquire_until(self(), block ? deadline_after(timeout) : try_only);
    }
    // Python: acquire(timeout=...)
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return lock_access::acquire_until(self(), deadline_after(timeout));
    }

    void lock() const { acquire(); }
    bool try_lock() const { return acquire(false); }
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) const {
        return acquire(timeout);
    }
    template <class Clock, class Duration>
    bool try_lock_until(std::chrono::time_point<Clock, Duration> tp) const {
        return lock_access::acquire_until(self(), deadline_at(tp));
    }
    void unlock() const { self().release(); }

private:
    const D& self() const noexcept { return static_cast<const D&>(*this); }
};

struct lock_state {
    robust_mutex mutex;
    std::atomic<std::uint32_t> owner_died{0};  // the holder took the lock over from a dead owner
};

struct rlock_state {
    robust_mutex mutex;
    std::atomic<std::uint32_t> owner_died{0};
    std::atomic<std::int32_t> owner_tid{0};
    std::atomic<std::uint32_t> count{0};  // recursion depth; touched by the owner only
};

}  // namespace detail

// Python: multiprocessing.Lock. Any process may release it, as in Python; a process that dies
// holding it hands it to the next acquirer (see previous_owner_died()).
class Lock : public detail::lockable<Lock> {
public:
    Lock() : s_(detail::shared_slot<detail::lock_state>::create()) {}

    // Python: Lock.release(); ValueError when it is not locked.
    void release() const {
        auto* s = s_.get();
        if (s->owner_died.load(std::memory_order_relaxed)) [[unlikely]]
            s->owner_died.store(0, std::memory_order_relaxed);
        if (!s->mutex.unlock()) [[unlikely]]
            throw ValueError("semaphore or lock released too many times");
    }

    // Beyond Python: true while the current holder got the lock from a process that died
    // holding it (the data it protects may be half-updated); false again after release().
    bool previous_owner_died() const noexcept {
        return s_->owner_died.load(std::memory_order_relaxed) != 0;
    }

    // Python 3.14: Lock.locked(); held by some process (a dead holder's too, until taken over).
    bool locked() const noexcept { return s_->mutex.owner() != 0; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "Lock", s_);
    }

private:
    friend struct detail::lock_access;
    explicit Lock(detail::shared_slot<detail::lock_state> s) noexcept : s_(std::move(s)) {}

    bool acquire_until(detail::deadline deadline) const {
        auto r = detail::lock_until(s_->mutex, deadline);
        if (r == detail::lock_result::acquired) [[likely]] return true;
        if (r == detail::lock_result::timed_out) return false;
        s_->owner_died.store(1, std::memory_order_relaxed);
        return true;
    }
    // Python's SemLock._is_mine(), by process.
    bool is_owned() const noexcept { return s_->mutex.owned_by_me(); }
    std::uint32_t release_all() const {
        release();
        return 1;
    }
    void restore(std::uint32_t) const { acquire_until(detail::forever); }

    detail::shared_slot<detail::lock_state> s_;
};

// Python: multiprocessing.RLock. Owned by one thread of one process, which may acquire it
// again; only that thread may release it. Owner death as for Lock.
class RLock : public detail::lockable<RLock> {
public:
    RLock() : s_(detail::shared_slot<detail::rlock_state>::create()) {}

    // Python: RLock.release(); ValueError (Python: AssertionError) unless this thread owns it.
    void release() const {
        auto* s = s_.get();
        if (!is_owned()) throw ValueError("attempt to release recursive lock not owned by thread");
        std::uint32_t depth = s->count.load(std::memory_order_relaxed);
        if (depth > 1) {
            s->count.store(depth - 1, std::memory_order_relaxed);
            return;
        }
        s->count.store(0, std::memory_order_relaxed);
        s->owner_tid.store(0, std::memory_order_relaxed);
        if (s->owner_died.load(std::memory_order_relaxed)) [[unlikely]]
            s->owner_died.store(0, std::memory_order_relaxed);
        s->mutex.unlock();
    }

    // Beyond Python: as Lock::previous_owner_died().
    bool previous_owner_died() const noexcept {
        return s_->owner_died.load(std::memory_order_relaxed) != 0;
    }

    // Python 3.14: RLock.locked(); held by some thread of some process.
    bool locked() const noexcept { return s_->mutex.owner() != 0; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "RLock", s_);
    }

private:
    friend struct detail::lock_access;
    explicit RLock(detail::shared_slot<detail::rlock_state> s) noexcept : s_(std::move(s)) {}

    bool acquire_until(detail::deadline deadline) const {
        auto* s = s_.get();
        const int tid = detail::this_tid();
        if (s->mutex.try_lock()) [[likely]] {
            take(tid, 1);
            return true;
        }
        if (s->owner_tid.load(std::memory_order_relaxed) == tid && s->mutex.owned_by_me()) {
            s->count.store(s->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
            return true;
        }
        auto r = detail::lock_until(s->mutex, deadline);
        if (r == detail::lock_result::timed_out) return false;
        take(tid, 1);
        if (r == detail::lock_result::owner_died) s->owner_died.store(1, std::memory_order_relaxed);
        return true;
    }
    void take(int tid, std::uint32_t depth) const noexcept {
        s_->owner_tid.store(tid, std::memory_order_relaxed);
        s_->count.store(depth, std::memory_order_relaxed);
    }
    bool is_owned() const noexcept {
        return s_->owner_tid.load(std::memory_order_relaxed) == detail::this_tid() &&
               s_->mutex.owned_by_me();
    }
    std::uint32_t release_all() const {
        std::uint32_t depth = s_->count.load(std::memory_order_relaxed);
        s_->count.store(1, std::memory_order_relaxed);
        release();
        return depth;
    }
    void restore(std::uint32_t depth) const {
        acquire_until(detail::forever);
        s_->count.store(depth, std::memory_order_relaxed);
    }

    detail::shared_slot<detail::rlock_state> s_;
};

// The lock of a Condition, a Value or an Array: a Lock or an RLock, as Python accepts either.
class AnyLock : public detail::lockable<AnyLock> {
public:
    // A new RLock, the default lock of Condition, Value and Array (as in Python).
    AnyLock() = default;
    AnyLock(Lock l) noexcept : v_(std::move(l)) {}
    AnyLock(RLock l) noexcept : v_(std::move(l)) {}

    void release() const {
        if (auto* r = std::get_if<RLock>(&v_)) return r->release();
        std::get<Lock>(v_).release();
    }
    bool previous_owner_died() const noexcept {
        return std::visit([](const auto& l) { return l.previous_owner_died(); }, v_);
    }
    bool locked() const noexcept {
        return std::visit([](const auto& l) { return l.locked(); }, v_);
    }
    // The lock itself, when it is of type L; nullptr otherwise.
    template <class L>
    const L* get_if() const noexcept {
        return std::get_if<L>(&v_);
    }

    // Under spawn and forkserver: travels as the lock it holds.
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "lock", v_);
    }

private:
    friend struct detail::lock_access;

    bool acquire_until(detail::deadline deadline) const {
        if (auto* r = std::get_if<RLock>(&v_)) return detail::lock_access::acquire_until(*r, deadline);
        return detail::lock_access::acquire_until(std::get<Lock>(v_), deadline);
    }
    bool is_owned() const noexcept {
        return std::visit([](const auto& l) { return detail::lock_access::is_owned(l); }, v_);
    }
    std::uint32_t release_all() const {
        return std::visit([](const auto& l) { return detail::lock_access::release_all(l); }, v_);
    }
    void restore(std::uint32_t depth) const {
        std::visit([depth](const auto& l) { detail::lock_access::restore(l, depth); }, v_);
    }

    std::variant<RLock, Lock> v_;
};

namespace detail {

struct semaphore_state {
    std::atomic<std::uint32_t> value;          // futex word
    std::atomic<std::uint32_t> waiters{0};     // sleeping in acquire; release skips the wake when 0
    std::uint32_t max_value;

    semaphore_state(std::uint32_t v, std::uint32_t max) : value(v), max_value(max) {}
};

}  // namespace detail

// Python: multiprocessing.Semaphore(value=1)
class Semaphore : public detail::lockable<Semaphore> {
public:
    explicit Semaphore(int value = 1) : Semaphore(value, INT_MAX) {}

    // Python: Semaphore.release(); ValueError above the maximum (BoundedSemaphore's initial
    // value, or SEM_VALUE_MAX).
    void release() const {
        auto* s = s_.get();
        std::uint32_t v = s->value.load(std::memory_order_relaxed);
        do {
            if (v >= s->max_value) throw ValueError("semaphore or lock released too many times");
        } while (!s->value.compare_exchange_weak(v, v + 1, std::memory_order_seq_cst,
                                                 std::memory_order_relaxed));
        // seq_cst pairs with the waiter's seq_cst increment of `waiters`: either we see it,
        // or its futex_wait sees the new value and does not sleep.
        if (s->waiters.load(std::memory_order_seq_cst) != 0) detail::posix::futex_wake(&s->value, 1);
    }

    // Python: Semaphore.get_value()
    int get_value() const noexcept { return int(s_->value.load(std::memory_order_relaxed)); }
    // Python 3.14: Semaphore.locked(); whether acquire() would block now (its value is 0).
    bool locked() const noexcept { return get_value() == 0; }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "Semaphore", s_);
    }

protected:
    Semaphore(int value, int max) {
        if (value < 0) throw ValueError("semaphore initial value must be >= 0");
        s_ = detail::shared_object<detail::semaphore_state>::create(std::uint32_t(value),
                                                                    std::uint32_t(max));
    }

private:
    friend struct detail::lock_access;

    bool acquire_until(detail::deadline deadline) const {
        auto* s = s_.get();
        for (;;) {
            std::uint32_t v = s->value.load(std::memory_order_relaxed);
            while (v > 0)
                if (s->value.compare_exchange_weak(v, v - 1, std::memory_order_acquire,
                                                   std::memory_order_relaxed))
                    return true;
            if (deadline == detail::try_only) return false;
            s->waiters.fetch_add(1, std::memory_order_seq_cst);
            bool slept = detail::wait_on(&s->value, 0, deadline);
            s->waiters.fetch_sub(1, std::memory_order_relaxed);
            if (!slept) return false;  // the deadline passed after the last try
        }
    }

    detail::shared_object<detail::semaphore_state> s_;
};

// Python: multiprocessing.BoundedSemaphore(value=1): release() above the initial value throws.
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1) : Semaphore(value, value) {}
};

namespace detail {

struct event_state {
    // Bit 0: the flag. Bits 1..31: how many times set() raised it, so a waiter that sleeps
    // through a set() followed by clear() still wakes up and returns true.
    std::atomic<std::uint32_t> word{0};
    std::atomic<std::uint32_t> waiters{0};
};

}  // namespace detail

// Python: multiprocessing.Event
class Event {
public:
    Event() : s_(detail::shared_object<detail::event_state>::create()) {}

    // Python: Event.is_set()
    bool is_set() const noexcept { return s_->word.load(std::memory_order_acquire) & 1u; }

    // Python: Event.set()
    void set() const {
        auto* s = s_.get();
        std::uint32_t w = s->word.load(std::memory_order_relaxed);
        do {
            if (w & 1u) return;
        } while (!s->word.compare_exchange_weak(w, w + 3u, std::memory_order_seq_cst,
                                                std::memory_order_relaxed));
        if (s->waiters.load(std::memory_order_seq_cst) != 0) detail::posix::futex_wake_all(&s->word);
    }

    // Python: Event.clear()
    void clear() const noexcept { s_->word.fetch_and(~1u, std::memory_order_release); }

    // Python: Event.wait(timeout=None); false when the timeout passed with the flag clear.
    bool wait() const { return wait_until(detail::forever); }
    template <detail::timeout_like T>
    bool wait(T timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    // Under spawn and forkserver: travels to a child as an argument (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "Event", s_);
    }

private:
    bool wait_until(detail::deadline deadline) const {
        auto* s = s_.get();
        const std::uint32_t start = s->word.load(std::memory_order_acquire);
        if (start & 1u) return true;
        auto raised = [&] { return (s->word.load(std::memory_order_acquire) >> 1) != (start >> 1); };
        s->waiters.fetch_add(1, std::memory_order_seq_cst);
        bool seen = false;
        for (;;) {
            std::uint32_t w = s->word.load(std::memory_order_acquire);
            if ((w >> 1) != (start >> 1)) {
                seen = true;
                break;
            }
            if (!detail::wait_on(&s->word, w, deadline)) break;
        }
        s->waiters.fetch_sub(1, std::memory_order_relaxed);
        return seen || raised();
    }

    detail::shared_object<detail::event_state> s_;
};

namespace detail {

// Notify hands out anonymous wake-up tokens, and only waiters that began waiting before the
// latest notify (their `seq` differs) may take one, so a late waiter cannot steal a wake-up
// meant for an earlier one. sleepers changes only under the Condition's lock.
struct condition_state {
    std::atomic<std::uint32_t> seq{0};       // futex word: bumped by each notify that gives tokens
    std::atomic<std::uint32_t> sleepers{0};  // waiting and not yet given a token
    std::atomic<std::uint32_t> tokens{0};    // given and not yet taken

    bool take_token() noexcept {
        std::uint32_t t = tokens.load(std::memory_order_acquire);
        while (t > 0)
            if (tokens.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel,
                                             std::memory_order_acquire))
                return true;
        return false;
    }
};

}  // namespace detail

// Python: multiprocessing.Condition(lock=None); the default lock is an RLock, as in Python.
// Lockable itself: locking the Condition locks its lock (Python's `with cond:`).
class Condition : public detail::lockable<Condition> {
public:
    Condition() : Condition(RLock()) {}
    explicit Condition(AnyLock lock)
        : lock_(std::move(lock)), s_(detail::shared_object<detail::condition_state>::create()) {}

    // Python: Condition.release()
    void release() const { lock_.release(); }

    // Python: Condition.wait(timeout=None). Releases the lock (every level of an RLock),
    // sleeps until notified or the timeout, takes the lock back. False on timeout.
    // Waiting without holding the lock throws ValueError (Python: AssertionError).
    bool wait() const { return wait_until(detail::forever); }
    template <detail::timeout_like T>
    bool wait(T timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    // Python: Condition.wait_for(predicate, timeout=None): the predicate's last value.
    template <std::predicate P>
    bool wait_for(P predicate) const {
        return wait_for_until(predicate, detail::forever);
    }
    template <std::predicate P, detail::timeout_like T>
    bool wait_for(P predicate, T timeout) const {
        return wait_for_until(predicate, detail::deadline_after(timeout));
    }

    // Python: Condition.notify(n=1): wakes up to n of the processes waiting now.
    void notify(int n = 1) const {
        check_owned();
        auto* s = s_.get();
        std::uint32_t sleeping = s->sleepers.load(std::memory_order_relaxed);
        std::uint32_t k = n < 0 ? 0 : std::min(sleeping, std::uint32_t(n));
        if (k == 0) return;
        s->sleepers.store(sleeping - k, std::memory_order_relaxed);
        s->tokens.fetch_add(k, std::memory_order_release);
        s->seq.fetch_add(1, std::memory_order_release);
        detail::posix::futex_wake(&s->seq, int(k));
    }
    // Python: Condition.notify_all()
    void notify_all() const { notify(INT_MAX); }

    // Beyond Python: the lock's previous_owner_died().
    bool previous_owner_died() const noexcept { return lock_.previous_owner_died(); }

    // Under spawn and forkserver: travels with its lock (see the top of the file).
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "Condition", lock_, s_);
    }

private:
    friend struct detail::lock_access;

    bool acquire_until(detail::deadline deadline) const {
        return detail::lock_access::acquire_until(lock_, deadline);
    }
    void check_owned() const {
        if (!detail::lock_access::is_owned(lock_)) throw ValueError("lock is not owned");
    }

    bool wait_until(detail::deadline deadline) const {
        if (!detail::lock_access::is_owned(lock_))
            throw ValueError("must acquire() condition before using wait()");
        auto* s = s_.get();
        s->sleepers.fetch_add(1, std::memory_order_relaxed);
        const std::uint32_t mine = s->seq.load(std::memory_order_relaxed);
        const std::uint32_t depth = detail::lock_access::release_all(lock_);
        bool notified = false;
        for (;;) {
            std::uint32_t cur = s->seq.load(std::memory_order_acquire);
            if (cur != mine && s->take_token()) {
                notified = true;
                break;
            }
            if (!detail::wait_on(&s->seq, cur, deadline)) break;
        }
        detail::lock_access::restore(lock_, depth);
        if (!notified) {
            // Timed out; a notify may have counted us meanwhile: take its token, or leave.
            if (s->seq.load(std::memory_order_acquire) != mine && s->take_token())
                notified = true;
            else
                s->sleepers.fetch_sub(1, std::memory_order_relaxed);
        }
        return notified;
    }

    template <class P>
    bool wait_for_until(P& predicate, detail::deadline deadline) const {
        bool result = predicate();
        while (!result) {
            if (deadline != detail::forever && detail::passed(deadline)) break;
            wait_until(deadline);
            result = predicate();
        }
        return result;
    }

    AnyLock lock_;
    detail::shared_object<detail::condition_state> s_;
};

namespace detail {

struct barrier_state {
    robust_mutex mutex;                       // guards everything below but the atomics' reads
    std::atomic<std::uint32_t> generation{0};  // futex word: bumped when a round ends
    std::atomic<std::uint32_t> count{0};       // parties arrived in this round
    std::atomic<std::uint32_t> broken{0};
    // Bit g % 64 tells how round g ended (1: broken). A waiter reads its round's bit after it
    // sees the round end; it is only overwritten 64 rounds later.
    std::atomic<std::uint64_t> broken_rounds{0};
    std::uint32_t parties;
    std::int64_t timeout_ns;  // default timeout of wait(); -1: none

    barrier_state(std::uint32_t p, std::int64_t t) : parties(p), timeout_ns(t) {}
};

// A Barrier's action as it travels to a spawned child: the code that rebuilds it (an
// instantiation of read_barrier_action) and the callable (detail/task.hpp).
using barrier_action = std::function<void()>;
using barrier_action_writer = void (*)(writer&, const barrier_action&);

template <class F>
void write_barrier_action(writer& w, const barrier_action& a);

template <class F>
std::pair<barrier_action, barrier_action_writer> read_barrier_action(reader& r) {
    return {barrier_action(read_callable<F>(r)), &write_barrier_action<F>};
}

template <class F>
void write_barrier_action(writer& w, const barrier_action& a) {
    w.write(to_code_ref(&read_barrier_action<F>));
    write_callable(w, *a.target<F>());
}

// An action that can travel: a task function (detail/task.hpp) called without arguments.
template <class F>
concept shippable_action = task_function<F> && std::invocable<F&> &&
                           !std::same_as<F, barrier_action>;

}  // namespace detail

// Python: multiprocessing.Barrier(parties, action=None, timeout=None). The action runs in the
// process whose arrival completes a round, before anyone is released; if it throws, the
// barrier breaks and the exception propagates from that process's wait().
// Under spawn and forkserver a Barrier travels to a child as an argument; its action too when
// it is a function pointer, a captureless lambda or a serializable function object (any other
// action, a lambda with captures, works under fork only, as Python needs a picklable action).
class Barrier {
public:
    // Barrier(1): what a spawned child's argument is built from before it is filled.
    Barrier() : Barrier(1) {}
    explicit Barrier(int parties, std::function<void()> action = {})
        : Barrier(init{}, parties, std::move(action), -1) {}
    template <detail::timeout_like T>
    Barrier(int parties, std::function<void()> action, T timeout)
        : Barrier(init{}, parties, std::move(action), detail::deadline_after(timeout).remaining_ns()) {}
    // An action that can travel to a spawned child.
    template <detail::shippable_action F>
    Barrier(int parties, F action) : Barrier(parties, std::function<void()>(std::move(action))) {
        write_action_ = &detail::write_barrier_action<F>;
    }
    template <detail::shippable_action F, detail::timeout_like T>
    Barrier(int parties, F action, T timeout)
        : Barrier(parties, std::function<void()>(std::move(action)), timeout) {
        write_action_ = &detail::write_barrier_action<F>;
    }

    // Python: Barrier.wait(timeout=None): this party's arrival index, 0..parties-1 (the last
    // to arrive gets parties-1). Throws BrokenBarrierError when the barrier is or becomes
    // broken, reset or aborted, or when the timeout passes (which breaks it for everybody).
    int wait() const {
        auto t = s_->timeout_ns;
        return wait_until(t < 0 ? detail::forever : detail::deadline_after(std::chrono::nanoseconds(t)));
    }
    template <detail::timeout_like T>
    int wait(T timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    // Python: Barrier.abort(): breaks the barrier; waiters and later wait()s throw.
    void abort() const {
        guard g(*this);
        if (!s_->broken.load(std::memory_order_relaxed)) break_round();
    }
    // Python: Barrier.reset(): back to empty and unbroken; current waiters throw.
    void reset() const {
        guard g(*this);
        if (s_->count.load(std::memory_order_relaxed) > 0) break_round();
        s_->broken.store(0, std::memory_order_relaxed);
    }

    // Python: Barrier.parties, Barrier.n_waiting, Barrier.broken
    int parties() const noexcept { return int(s_->parties); }
    int n_waiting() const noexcept {
        return s_->broken.load(std::memory_order_relaxed) ? 0
                                                          : int(s_->count.load(std::memory_order_relaxed));
    }
    bool broken() const noexcept { return s_->broken.load(std::memory_order_relaxed) != 0; }

    // Under spawn and forkserver: travels to a child as an argument, with its action when that
    // can travel; otherwise start() throws SerializationError.
    template <class Archive>
    void serialize(Archive& ar) {
        detail::travel(ar, "Barrier", s_);
        bool has_action = bool(action_);
        ar(has_action);
        if constexpr (Archive::is_loading) {
            action_ = nullptr;
            write_action_ = nullptr;
            if (!has_action) return;
            detail::code_ref ref;
            ar(ref);
            using reader_fn =
                std::pair<detail::barrier_action, detail::barrier_action_writer> (*)(detail::reader&);
            auto read = detail::from_code_ref_as<reader_fn>(ref);
            std::tie(action_, write_action_) = read(ar);
        } else {
            if (!has_action) return;
            if (!write_action_)
                throw SerializationError(
                    "multiprocessing: a Barrier with an action cannot be sent to a spawned child "
                    "unless the action is a function pointer, a captureless lambda or a "
                    "serializable function object (a lambda with captures works under 'fork' "
                    "only; Python: the action must be picklable)");
            write_action_(ar, action_);
        }
    }

private:
    struct init {};
    Barrier(init, int parties, std::function<void()> action, std::int64_t timeout_ns)
        : action_(std::move(action)) {
        if (parties < 1) throw ValueError("parties must be > 0");
        s_ = detail::shared_object<detail::barrier_state>::create(std::uint32_t(parties), timeout_ns);
        // A std::function holding a plain function can travel as that function.
        if (action_.target<void (*)()>()) write_action_ = &detail::write_barrier_action<void (*)()>;
    }

    // Holds the internal mutex. A process that died inside it may have left the round
    // half-updated, so the barrier breaks, as a party's death would break it in Python.
    struct guard {
        const Barrier& b;
        explicit guard(const Barrier& barrier) : b(barrier) {
            if (b.s_->mutex.lock() == detail::lock_result::owner_died &&
                !b.s_->broken.load(std::memory_order_relaxed))
                b.break_round();
        }
        ~guard() { b.s_->mutex.unlock(); }
    };

    // Ends the current round as broken (under the mutex) and wakes its waiters.
    void break_round() const {
        auto* s = s_.get();
        std::uint32_t g = s->generation.load(std::memory_order_relaxed);
        s->broken.store(1, std::memory_order_relaxed);
        s->count.store(0, std::memory_order_relaxed);
        s->broken_rounds.fetch_or(std::uint64_t(1) << (g % 64), std::memory_order_relaxed);
        s->generation.store(g + 1, std::memory_order_release);
        detail::posix::futex_wake_all(&s->generation);
    }

    int wait_until(detail::deadline deadline) const {
        auto* s = s_.get();
        std::uint32_t gen;
        int index;
        {
            guard g(*this);
            if (s->broken.load(std::memory_order_relaxed)) throw BrokenBarrierError();
            index = int(s->count.fetch_add(1, std::memory_order_relaxed));
            gen = s->generation.load(std::memory_order_relaxed);
            if (std::uint32_t(index) + 1 == s->parties) {
                if (action_) {
                    try {
                        action_();
                    } catch (...) {
                        break_round();
                        throw;
                    }
                }
                s->count.store(0, std::memory_order_relaxed);
                s->broken_rounds.fetch_and(~(std::uint64_t(1) << (gen % 64)), std::memory_order_relaxed);
                s->generation.store(gen + 1, std::memory_order_release);
            }
        }
        if (std::uint32_t(index) + 1 == s->parties) {
            // Woken after the unlock, so that their next wait() does not find the mutex held.
            detail::posix::futex_wake_all(&s->generation);
            return index;
        }
        while (s->generation.load(std::memory_order_acquire) == gen) {
            if (!detail::wait_on(&s->generation, gen, deadline)) {
                guard g(*this);
                if (s->generation.load(std::memory_order_relaxed) == gen) {
                    break_round();
                    throw BrokenBarrierError();
                }
            }
        }
        if (s->broken_rounds.load(std::memory_order_relaxed) >> (gen % 64) & 1u)
            throw BrokenBarrierError();
        return index;
    }

    std::function<void()> action_;
    detail::barrier_action_writer write_action_ = nullptr;  // null: the action cannot travel
    detail::shared_object<detail::barrier_state> s_;
};

}  // namespace multiprocessing
