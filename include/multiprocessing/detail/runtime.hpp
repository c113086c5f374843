// Process-wide state of the library: this process's pid, cached because glibc's getpid() is a
// system call and the lock fast path needs it; refreshed in every forked child.
#pragma once

#include <atomic>

#include <pthread.h>
#include <unistd.h>

namespace multiprocessing::detail {

struct runtime_pid {
    std::atomic<int> pid{0};
};

inline runtime_pid& pid_cache() noexcept {
    static runtime_pid cache;
    return cache;
}

inline void forget_pid() noexcept { pid_cache().pid.store(0, std::memory_order_relaxed); }

inline int self_pid() noexcept {
    int p = pid_cache().pid.load(std::memory_order_relaxed);
    if (p == 0) [[unlikely]] {
        static const bool registered = [] {
            // Covers a raw fork() by the user too, not only ours.
            ::pthread_atfork(nullptr, nullptr, &forget_pid);
            return true;
        }();
        (void)registered;
        p = int(::getpid());
        pid_cache().pid.store(p, std::memory_order_relaxed);
    }
    return p;
}

// Handlers around every fork() of this process, raw ones by the user included (pthread_atfork).
inline void at_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
    (void)self_pid();  // its handler first: the child's handlers registered here use it
    ::pthread_atfork(prepare, parent, child);
}

}  // namespace multiprocessing::detail
