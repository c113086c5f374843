// The robust process-shared mutex under Lock, RLock, Condition and the queues.
//
// The word holds the owner's pid (plus a waiters bit), so any thread of the owning process may
// release it, as Python's Lock allows. Unlike Python's semaphore-based Lock, a process that dies
// holding it does not deadlock the others: a waiter wakes up every `liveness_check_ns`, and when
// the owner is gone (exited or a zombie) it takes the lock over and is told so.
//
// The word: waiters bit (31), bits 22..30 for the layer above (lease_lock's marks; 0 in a plain
// mutex, which never sets them), the owner's pid in bits 0..21 (Linux pids are below
// PID_MAX_LIMIT, 2^22).
#pragma once

#include <atomic>
#include <cstdint>

#include "posix/futex.hpp"
#include "runtime.hpp"

namespace multiprocessing::detail {

enum class lock_result : std::uint8_t {
    acquired,
    owner_died,  // acquired, but the previous owner died holding it: the data may be torn
    timed_out,
};

struct robust_mutex {
    static constexpr std::uint32_t waiters_bit = 0x8000'0000u;
    static constexpr std::uint32_t pid_mask = 0x003f'ffffu;
    static constexpr std::int64_t liveness_check_ns = 50'000'000;
    static constexpr int spin_limit = 100;

    std::atomic<std::uint32_t> word{0};

    bool try_lock() noexcept {
        std::uint32_t expected = 0;
        return word.compare_exchange_strong(expected, std::uint32_t(self_pid()),
                                            std::memory_order_acquire, std::memory_order_relaxed);
    }

    // Blocks until acquired or the monotonic deadline (-1 = forever) passes.
    lock_result lock(detail::deadline deadline_ns = forever) noexcept {
        if (try_lock()) [[likely]] return lock_result::acquired;
        return lock_slow(deadline_ns);
    }

    // Returns false when the mutex was not locked (Python's "release unlocked lock").
    bool unlock() noexcept {
        std::uint32_t old = word.exchange(0, std::memory_order_release);
        if (old & waiters_bit) posix::futex_wake(&word, 1);
        return old != 0;
    }

    bool locked() const noexcept { return word.load(std::memory_order_relaxed) != 0; }
    int owner() const noexcept { return int(word.load(std::memory_order_relaxed) & pid_mask); }
    bool owned_by_me() const noexcept { return owner() == self_pid(); }

    // Whether the owner named in `w` is another process that is gone (exited, or a zombie).
    static bool owner_gone(std::uint32_t w) noexcept {
        const int owner = int(w & pid_mask);
        return owner != 0 && owner != self_pid() && posix::process_gone(owner);
    }

    // One wait for a held word seen as `cur`: sets the waiters bit and sleeps until a wake-up,
    // a change, one liveness slice or `deadline` (-1 = none). False when it woke by time: the
    // caller looks whether the owner is gone, and at its deadline.
    bool sleep(std::uint32_t cur, detail::deadline deadline_ns) noexcept {
        if (!(cur & waiters_bit) &&
            !word.compare_exchange_strong(cur, cur | waiters_bit, std::memory_order_relaxed,
                                          std::memory_order_relaxed))
            return true;  // it changed: look again
        const std::int64_t slice = posix::monotonic_ns() + liveness_check_ns;
        const auto until = earlier(deadline_ns, detail::deadline::at_ns(slice));
        return posix::futex_wait(&word, cur | waiters_bit, until);
    }

private:
    lock_result lock_slow(detail::deadline deadline_ns) noexcept {
        const std::uint32_t me = std::uint32_t(self_pid());
        for (int i = 0;; ++i) {
            std::uint32_t cur = word.load(std::memory_order_relaxed);
            if (cur == 0) {
                // One that slept sets the waiters bit: unlock() woke only it, others may still
                // sleep, and a spurious wake is cheap.
                const std::uint32_t bit = i >= spin_limit ? waiters_bit : 0;
                if (word.compare_exchange_weak(cur, me | bit, std::memory_order_acquire,
                                               std::memory_order_relaxed))
                    return lock_result::acquired;
                continue;
            }
            if (i < spin_limit) {
                posix::cpu_relax();
                continue;
            }
            if (deadline_ns.expired())
                return lock_result::timed_out;
            if (!sleep(cur, deadline_ns)) {
                // Woke by time: is the owner still there?
                std::uint32_t seen = word.load(std::memory_order_relaxed);
                if (owner_gone(seen) &&
                    word.compare_exchange_strong(seen, me | waiters_bit,
                                                 std::memory_order_acquire,
                                                 std::memory_order_relaxed))
                    return lock_result::owner_died;
            }
        }
    }
};

static_assert(sizeof(robust_mutex) == 4);

}  // namespace multiprocessing::detail
