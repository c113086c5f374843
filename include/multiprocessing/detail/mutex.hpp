// The robust process-shared mutex under Lock, RLock, Condition and the queues.
//
// The word holds the owner's pid (plus a waiters bit), so any thread of the owning process may
// release it, as Python's Lock allows. Unlike Python's semaphore-based Lock, a process that dies
// holding it does not deadlock the others: a waiter wakes up every `liveness_check_ns`, and when
// the owner is gone (exited or a zombie) it takes the lock over and is told so.
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
    static constexpr std::uint32_t pid_mask = 0x7fff'ffffu;
    static constexpr std::int64_t liveness_check_ns = 50'000'000;
    static constexpr int spin_limit = 100;

    std::atomic<std::uint32_t> word{0};

    bool try_lock() noexcept {
        std::uint32_t expected = 0;
        return word.compare_exchange_strong(expected, std::uint32_t(self_pid()),
                                            std::memory_order_acquire, std::memory_order_relaxed);
    }

    // Blocks until acquired or the monotonic deadline (-1 = forever) passes.
    lock_result lock(std::int64_t deadline_ns = -1) noexcept {
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

private:
    lock_result lock_slow(std::int64_t deadline_ns) noexcept {
        const std::uint32_t me = std::uint32_t(self_pid());
        for (int i = 0; i < spin_limit; ++i) {
            posix::cpu_relax();
            std::uint32_t expected = 0;
            if (word.load(std::memory_order_relaxed) == 0 &&
                word.compare_exchange_weak(expected, me, std::memory_order_acquire,
                                           std::memory_order_relaxed))
                return lock_result::acquired;
        }
        for (;;) {
            std::uint32_t cur = word.load(std::memory_order_relaxed);
            if (cur == 0) {
                // Keep the waiters bit: others may still sleep, and a spurious wake is cheap.
                if (word.compare_exchange_weak(cur, me | waiters_bit, std::memory_order_acquire,
                                               std::memory_order_relaxed))
                    return lock_result::acquired;
                continue;
            }
            if (!(cur & waiters_bit) &&
                !word.compare_exchange_weak(cur, cur | waiters_bit, std::memory_order_relaxed,
                                            std::memory_order_relaxed))
                continue;
            std::int64_t now = posix::monotonic_ns();
            if (deadline_ns >= 0 && now >= deadline_ns) return lock_result::timed_out;
            std::int64_t slice = now + liveness_check_ns;
            std::int64_t until = (deadline_ns >= 0 && deadline_ns < slice) ? deadline_ns : slice;
            if (!posix::futex_wait(&word, cur | waiters_bit, until)) {
                // Woke by time: is the owner still there?
                std::uint32_t seen = word.load(std::memory_order_relaxed);
                int owner = int(seen & pid_mask);
                if (owner != 0 && owner != int(me) && posix::process_gone(owner) &&
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
