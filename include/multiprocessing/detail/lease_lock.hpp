// A robust mutex in shared memory that the one thread using it may keep between its critical
// sections: a lease. Entering a critical section under the lease takes no atomic
// read-modify-write. (On x86 each one waits until every store before it has reached the cache,
// so a queue's producer would otherwise stall on the lines its consumer just read, twice an
// item: a third of a queue's throughput between two processes.)
//
// The words. `mutex.word` is the robust mutex's (owner pid, waiters bit) with two marks of ours:
// `leased_bit` (the owner's thread named in `holder` keeps the mutex as a lease) and
// `revoking_bit` (the owner is revoking that lease and must not touch the data yet: the holder
// may still be inside). `holder` names the last thread granted a lease, `in_op` says that it
// is inside a critical section under it. Only a thread that owns the word writes `holder` or
// the marks; only the holder writes `in_op`, but for the owner that clears it after the holder
// died inside.
//
// The states of the word, and who leaves each:
//   0                       free.
//   P                       held by a thread of process P, plainly.
//   P|leased                held as a lease by `holder` (a thread of P), inside or not.
//   R|revoking              R revokes: waits for `in_op` to clear (or the holder to die).
//   revoking (no pid)       a revoker whose deadline passed handed the revocation back.
// Every change of owner is one compare-and-swap of the word, so that no process killed between
// two steps leaves a state nobody may take over:
// - A holder enters by storing `in_op` = 1 and re-reading the word, with no fence between the
//   two; the revoker takes the word from P|leased to R|revoking and then runs membarrier(2) on
//   every CPU before reading `in_op` (an asymmetric Dekker handshake). So either the holder sees
//   the lease gone and backs off to acquire(), or the revoker sees it inside and waits for it to
//   leave. A holder killed anywhere leaves P|leased with P gone: revoked as any lease, and
//   reported as an owner's death when it died inside (`in_op` still set).
// - A revoker killed after taking the word leaves R|revoking with R gone; a revoker that gave up
//   leaves the pid out. Either is taken over by the next thread (the first after one liveness
//   slice, the second at once), which finishes the revocation: membarrier, wait for `in_op`.
//   Nothing was touched under the revoking mark, so only the holder's death inside is
//   reported. The holder itself, revoked, waits in acquire() like anyone else, never on its
//   own pid: no state names a live process whose threads are all waiting for the word.
// - `in_op` is cleared by an owner of the word only (after the holder died inside), never by a
//   thread that may yet fail to take the word: a stale clear would let the next revoker of a
//   live holder in beside it.
//
// A lease is granted on release to a thread that took the mutex `lease_after` times in a row with
// nobody else taking it in between and nobody waiting (threads that take turns would only pay
// for revocations), when `holder` is empty, this thread, or a thread that is gone: a revoked
// holder that has yet to notice may still store to `in_op`, so no other live thread may be
// given that word.
// Without membarrier(2) (Linux < 4.16, a seccomp filter) no lease is ever granted.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "mutex.hpp"
#include "posix/futex.hpp"
#include "posix/membarrier.hpp"
#include "runtime.hpp"

// Fault injection for the crash-consistency tests (tests/test_ring_faults.cpp, which kills the
// process, or makes it wait, at the named point); nothing otherwise.
#ifndef MP_RING_FAULT_POINT
#define MP_RING_FAULT_POINT(name) static_cast<void>(0)
#endif

namespace multiprocessing::detail {

struct lease_lock {
    static constexpr std::uint32_t leased_bit = 0x4000'0000u;
    static constexpr std::uint32_t revoking_bit = 0x2000'0000u;
    static_assert(((leased_bit | revoking_bit) & ~robust_mutex::waiters_bit &
                   ~robust_mutex::pid_mask) == (leased_bit | revoking_bit));
    static constexpr std::chrono::milliseconds revoke_fallback{1};
    // A waiter sleeps this long at a time; one that woke by time takes a free word without the
    // waiters bit, so that the releases after it make no system call while nobody else sleeps
    // for long (a sleeper whose wake-up that drops polls within one slice). A bit kept set once
    // anyone slept cost 4 contending producers about 13% of their throughput in futex wakes.
    static constexpr std::int64_t sleep_slice_ns = 1'000'000;
    static constexpr std::uint32_t lease_after = 64;

    robust_mutex mutex;
    std::atomic<std::uint32_t> in_op{0};   // the holder is inside a critical section
    std::atomic<std::uint64_t> holder{0};  // pid << 32 | tid of the last thread granted a lease
    // Under the mutex: who took it last, and how many times in a row.
    std::atomic<std::uint64_t> last_user{0};
    std::atomic<std::uint32_t> streak{0};

    // This thread, as `holder` names it.
    static std::uint64_t self_id() noexcept {
        return std::uint64_t(std::uint32_t(self_pid())) << 32 | std::uint32_t(posix::self_tid());
    }

    // Whether thread `me` holds the mutex as a lease now.
    bool leased_by(std::uint64_t me) const noexcept {
        return holder.load(std::memory_order_relaxed) == me &&
               (mutex.word.load(std::memory_order_relaxed) &
                (leased_bit | robust_mutex::pid_mask)) == (leased_bit | std::uint32_t(me >> 32));
    }

    // Enters a critical section under this thread's lease, if it holds one.
    bool enter_leased(std::uint64_t me) noexcept {
        if (!leased_by(me)) return false;
        in_op.store(1, std::memory_order_relaxed);
        // The revoker's membarrier() stands in for a fence here.
        std::atomic_signal_fence(std::memory_order_seq_cst);
        const std::uint32_t mine = leased_bit | std::uint32_t(me >> 32);
        if ((mutex.word.load(std::memory_order_acquire) &
             (leased_bit | robust_mutex::pid_mask)) == mine)
            return true;
        in_op.store(0, std::memory_order_release);
        return false;
    }
    void leave_leased() noexcept { in_op.store(0, std::memory_order_release); }

    // Takes the mutex (revoking a lease, or taking over from a dead owner or revoker, if need
    // be) until the monotonic `deadline` (-1 = forever), but waits at least `grace_ns` for a
    // live owner. A deadline that has passed still takes a mutex that is free, leased, or held
    // by a process that is gone.
    lock_result acquire(detail::deadline deadline, std::int64_t grace_ns = 0) noexcept {
        const std::uint32_t me = std::uint32_t(self_pid());
        std::atomic<std::uint32_t>& word = mutex.word;
        std::int64_t next_look = 0;  // when to look whether the owner is gone (0: not waiting yet)
        for (int i = 0;; ++i) {
            std::uint32_t w = word.load(std::memory_order_relaxed);
            const std::uint32_t waiters = w & robust_mutex::waiters_bit;
            if ((w & ~robust_mutex::waiters_bit) == 0) {
                // Free (a release clears the waiters bit too). One woken by a release sets it:
                // others may still sleep.
                const std::uint32_t bit =
                    i >= robust_mutex::spin_limit ? robust_mutex::waiters_bit : 0;
                if (word.compare_exchange_weak(w, me | bit, std::memory_order_acquire,
                                               std::memory_order_relaxed))
                    return lock_result::acquired;
                continue;
            }
            if ((w & leased_bit) || w == (revoking_bit | waiters)) {
                if (word.compare_exchange_weak(w, me | revoking_bit | waiters,
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
                    MP_RING_FAULT_POINT(revoke_marked);
                    return revoke(deadline);
                }
                continue;
            }
            if (i < robust_mutex::spin_limit) {
                posix::cpu_relax();
                continue;
            }
            std::int64_t now = posix::monotonic_ns();
            if (next_look == 0) {
                deadline = later(deadline, detail::deadline::at_ns(now + grace_ns));
                next_look = now + robust_mutex::liveness_check_ns;
            }
            const bool late = deadline.expired();
            const auto until = earlier(deadline, detail::deadline::at_ns(now + sleep_slice_ns));
            if (!late && mutex.sleep(w, until)) continue;  // woken: look again
            // Woke by time: spin again, and take a free word without the waiters bit.
            i = -1;
            now = posix::monotonic_ns();
            if (late || now >= next_look) {
                next_look = now + robust_mutex::liveness_check_ns;
                // Is the owner still there?
                w = word.load(std::memory_order_relaxed);
                if (robust_mutex::owner_gone(w)) {
                    const std::uint32_t mark = w & revoking_bit;
                    if (word.compare_exchange_strong(
                            w, me | mark | robust_mutex::waiters_bit, std::memory_order_acquire,
                            std::memory_order_relaxed))
                        return mark ? revoke(deadline) : lock_result::owner_died;
                    continue;
                }
                if (late) return lock_result::timed_out;
            }
        }
    }

    // Releases the mutex taken by acquire(), or keeps it as this thread's lease.
    void release(std::uint64_t me, bool may_lease) noexcept {
        std::uint32_t run = 1;
        if (last_user.load(std::memory_order_relaxed) == me)
            run = streak.load(std::memory_order_relaxed) + 1;
        else last_user.store(me, std::memory_order_relaxed);
        streak.store(run, std::memory_order_relaxed);
        if (may_lease && run >= lease_after && grantable(me, run) &&
            posix::membarrier_register()) {
            holder.store(me, std::memory_order_relaxed);
            in_op.store(0, std::memory_order_relaxed);
            // Only when nobody waits: a waiter's bit fails the exchange.
            std::uint32_t held = std::uint32_t(me >> 32);
            if (mutex.word.compare_exchange_strong(held, held | leased_bit,
                                                   std::memory_order_release,
                                                   std::memory_order_relaxed))
                return;
        }
        mutex.unlock();
    }

private:
    bool grantable(std::uint64_t me, std::uint32_t run) noexcept {
        const std::uint64_t h = holder.load(std::memory_order_relaxed);
        if (h == 0 || h == me) return true;
        // Another thread's old lease: free once that thread is gone (looked at now and then:
        // it costs system calls).
        if (run != lease_after && run % 1024 != 0) return false;
        return posix::thread_gone(int(h >> 32), int(std::uint32_t(h)));
    }

    // With the word taken as this process's and marked revoking: waits until the holder is
    // outside its critical section (or died in it), then owns the mutex. Past `deadline`, hands
    // the revocation back (the mark without a pid) and times out.
    lock_result revoke(detail::deadline deadline) noexcept {
        const std::uint64_t h = holder.load(std::memory_order_relaxed);
        const int pid = int(h >> 32), tid = int(std::uint32_t(h));
        // Refused only where this process may not call membarrier(2) but the holder's could:
        // a holder between its two steps then has been switched out meanwhile (which drains
        // its stores) or has long finished them.
        if (!posix::membarrier_all()) std::this_thread::sleep_for(revoke_fallback);
        // The holder never waits inside for anything its revoker may hold. in_op is cleared by
        // a plain store, which wakes nobody, so this polls, backing off.
        bool died_inside = false;
        for (unsigned i = 0; in_op.load(std::memory_order_acquire) != 0; ++i) {
            if (i % 64 == 63) {
                if (h == 0 || posix::thread_gone(pid, tid)) {
                    died_inside = true;
                    break;
                }
                if (deadline.expired()) {
                    mutex.word.fetch_and(~robust_mutex::pid_mask, std::memory_order_relaxed);
                    posix::futex_wake_all(&mutex.word);
                    return lock_result::timed_out;
                }
            }
            if (i < 64) posix::cpu_relax();
            else if (i < 1024) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        MP_RING_FAULT_POINT(revoke_waited);
        if (died_inside) in_op.store(0, std::memory_order_relaxed);
        mutex.word.fetch_and(~revoking_bit, std::memory_order_acquire);
        return died_inside ? lock_result::owner_died : lock_result::acquired;
    }
};

static_assert(sizeof(lease_lock) == 32);

}  // namespace multiprocessing::detail
