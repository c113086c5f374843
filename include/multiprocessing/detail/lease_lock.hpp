// A robust mutex in shared memory that the one thread using it may keep between its critical
// sections: a lease. Entering a critical section under the lease takes no atomic
// read-modify-write. (On x86 each one waits until every store before it has reached the cache,
// so a queue's producer would otherwise stall on the lines its consumer just read, twice an
// item: a third of a queue's throughput between two processes.)
//
// The holder enters by announcing itself in `in_op` and then re-reading `lease`, with no fence
// between the two; whoever wants the lock revokes the lease by changing `lease` and then runs
// membarrier(2) on every CPU before reading `in_op` (an asymmetric Dekker handshake). So either
// the holder sees the lease revoked and backs off to the mutex, or the revoker sees it inside
// and waits for it to leave. The mutex word keeps the holder's pid while the lease lasts, so a
// holder that dies is taken over as any dead owner is.
//
// A lease is granted on release to a thread that took the mutex `lease_after` times in a row with
// nobody else taking it in between and nobody waiting (threads that take turns would only pay
// for revocations), when the lease is free or was last this thread's (or its holder has gone):
// only that thread ever writes `in_op`, so a holder that was revoked and has yet to notice
// cannot disturb the next one.
// Without membarrier(2) (Linux < 4.16, a seccomp filter) no lease is ever granted.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>

#include "mutex.hpp"
#include "posix/futex.hpp"
#include "posix/membarrier.hpp"
#include "runtime.hpp"

namespace multiprocessing::detail {

struct lease_lock {
    static constexpr std::uint64_t active_bit = std::uint64_t(1) << 63;
    // A thread waiting for the mutex looks for a lease to revoke this often.
    static constexpr std::int64_t lease_check_ns = 1'000'000;
    static constexpr std::chrono::milliseconds revoke_fallback{1};
    static constexpr std::uint32_t lease_after = 64;

    robust_mutex mutex;
    std::atomic<std::uint32_t> in_op{0};  // the holder is inside a critical section
    std::atomic<std::uint64_t> lease{0};  // [active_bit] | pid << 32 | tid of the last holder
    // Under the mutex: who took it last, and how many times in a row.
    std::atomic<std::uint64_t> last_user{0};
    std::atomic<std::uint32_t> streak{0};

    // This thread, as a lease names it.
    static std::uint64_t self_id() noexcept {
        return std::uint64_t(std::uint32_t(self_pid())) << 32 | std::uint32_t(posix::self_tid());
    }

    // Enters a critical section under this thread's lease, if it holds one.
    bool enter_leased(std::uint64_t me) noexcept {
        if (lease.load(std::memory_order_relaxed) != (me | active_bit)) return false;
        in_op.store(1, std::memory_order_relaxed);
        // The revoker's membarrier() stands in for a fence here.
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (lease.load(std::memory_order_acquire) == (me | active_bit)) return true;
        in_op.store(0, std::memory_order_release);
        return false;
    }
    void leave_leased() noexcept { in_op.store(0, std::memory_order_release); }

    // Takes the mutex, revoking another thread's lease if need be.
    lock_result acquire(std::uint64_t me) noexcept {
        if (mutex.try_lock()) return lock_result::acquired;
        for (;;) {
            std::uint64_t l = lease.load(std::memory_order_acquire);
            if (l & active_bit) {
                if (auto r = revoke(l)) return *r;
                continue;
            }
            lock_result r = mutex.lock(posix::monotonic_ns() + lease_check_ns);
            if (r == lock_result::timed_out) continue;
            // A holder that died with its lease was taken over by its pid: its lease goes.
            l = lease.load(std::memory_order_acquire);
            if ((l & active_bit) && (l & ~active_bit) != me) {
                lease.compare_exchange_strong(l, 0, std::memory_order_acq_rel);
                in_op.store(0, std::memory_order_relaxed);
            }
            return r;
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
            !(mutex.word.load(std::memory_order_relaxed) & robust_mutex::waiters_bit) &&
            posix::membarrier_register()) {
            in_op.store(0, std::memory_order_relaxed);
            lease.store(me | active_bit, std::memory_order_release);
            return;
        }
        mutex.unlock();
    }

private:
    bool grantable(std::uint64_t me, std::uint32_t run) noexcept {
        const std::uint64_t l = lease.load(std::memory_order_relaxed);
        if (l == 0 || l == me) return true;
        // Another thread's old lease: free once that thread is gone (looked at now and then:
        // it costs system calls).
        if (run != lease_after && run % 1024 != 0) return false;
        std::uint64_t seen = l;
        return posix::thread_gone(int(l >> 32), int(std::uint32_t(l))) &&
               lease.compare_exchange_strong(seen, 0, std::memory_order_acq_rel);
    }

    // Revokes lease `l` and takes the mutex over from its holder once it is outside its
    // critical section. nullopt when another thread changed the lease or the mutex first.
    std::optional<lock_result> revoke(std::uint64_t l) noexcept {
        const int pid = int((l & ~active_bit) >> 32);
        const int tid = int(std::uint32_t(l));
        bool dead = posix::thread_gone(pid, tid);
        if (!lease.compare_exchange_strong(l, dead ? 0 : l & ~active_bit,
                                           std::memory_order_acq_rel))
            return std::nullopt;
        // Refused only where this process may not call membarrier(2) but the holder's could:
        // a holder between its two steps then has been switched out meanwhile (which drains
        // its stores) or has long finished them.
        if (!dead && !posix::membarrier_all()) std::this_thread::sleep_for(revoke_fallback);
        // Wait for the holder to leave its critical section (or to die in it). The holder
        // never waits inside for anything its revoker may hold. in_op is cleared by a plain
        // store, which wakes nobody, so this polls, backing off.
        bool died_inside = false;
        for (unsigned i = 0; in_op.load(std::memory_order_acquire) != 0; ++i) {
            if (dead || (i % 64 == 63 && posix::thread_gone(pid, tid))) {
                died_inside = true;
                break;
            }
            if (i < 64) posix::cpu_relax();
            else if (i < 1024) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        if (died_inside) in_op.store(0, std::memory_order_relaxed);
        // The mutex word holds the holder's pid (and maybe the waiters bit): take it over.
        const std::uint32_t me_pid = std::uint32_t(self_pid());
        std::uint32_t w = mutex.word.load(std::memory_order_relaxed);
        do {
            if (int(w & robust_mutex::pid_mask) != pid) return std::nullopt;
        } while (!mutex.word.compare_exchange_weak(
            w, me_pid | (w & robust_mutex::waiters_bit), std::memory_order_acquire,
            std::memory_order_relaxed));
        return died_inside ? lock_result::owner_died : lock_result::acquired;
    }
};

static_assert(sizeof(lease_lock) == 32);

}  // namespace multiprocessing::detail
