// Futex wait/wake on a 32-bit word in shared memory (process-shared: no FUTEX_PRIVATE_FLAG),
// and the few process-liveness calls the robust primitives need.
#pragma once

#include <atomic>
#include <cstdint>

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "syscall.hpp"

namespace multiprocessing::detail::posix {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

// Sleeps while `*word == expected`, at most until `deadline`.
// Returns false on timeout; true on a wake-up, a value change or a signal (callers re-check).
inline bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       deadline until) {
    timespec ts;
    timespec* tp = nullptr;
    if (!until.is_forever()) {
        ts.tv_sec = until.monotonic_ns() / 1'000'000'000;
        ts.tv_nsec = until.monotonic_ns() % 1'000'000'000;
        tp = &ts;
    }
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so retries keep it.
    long r = MP_SYSCALL(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word),
                                  FUTEX_WAIT_BITSET, expected, tp, nullptr,
                                  FUTEX_BITSET_MATCH_ANY));
    if (r == -1 && errno == ETIMEDOUT) return false;
    return true;
}

inline void futex_wake(std::atomic<std::uint32_t>* word, int n) {
    MP_SYSCALL(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, n,
                         nullptr, nullptr, 0));
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) { futex_wake(word, INT32_MAX); }

// A short busy pause for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// True when process `pid` no longer runs: it does not exist or it is a zombie waiting to be
// reaped. kill(pid, 0) alone would call a zombie alive, and the parent that would reap it may
// be the very process waiting for its lock.
inline bool process_gone(int pid) noexcept {
    if (pid <= 0) return false;
#ifdef SYS_pidfd_open
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        pollfd p{int(fd), POLLIN, 0};
        int r = ::poll(&p, 1, 0);
        ::close(int(fd));
        return r > 0;
    }
    if (errno == ESRCH) return true;
#endif
    return ::kill(pid, 0) == -1 && errno == ESRCH;
}

}  // namespace multiprocessing::detail::posix
