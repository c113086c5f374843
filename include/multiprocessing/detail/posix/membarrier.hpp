// membarrier(2) for the leased locks (detail/lease_lock.hpp): a memory barrier run on every
// CPU that executes a thread of a registered process, so that a rarely taken slow path can
// stand in for the fences a frequent fast path leaves out. Linux 4.16 and later.
#pragma once

#include <atomic>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../runtime.hpp"
#include "futex.hpp"

namespace multiprocessing::detail::posix {

// Registers this process to take part in membarrier_all(); once per process (a forked child
// is a new registration). False when the kernel or a seccomp filter refuses.
inline bool membarrier_register() noexcept {
    static std::atomic<int> registered_pid{0};
    static std::atomic<bool> refused{false};
    const int pid = self_pid();
    if (registered_pid.load(std::memory_order_relaxed) == pid) return true;
    if (refused.load(std::memory_order_relaxed)) return false;
    if (::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) {
        refused.store(true, std::memory_order_relaxed);
        return false;
    }
    registered_pid.store(pid, std::memory_order_relaxed);
    return true;
}

// A full memory barrier on every CPU running a thread of a registered process.
inline bool membarrier_all() noexcept {
    return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

// This thread's id, cached (and re-read in a forked child).
inline int self_tid() noexcept {
    thread_local int pid = 0, tid = 0;
    if (pid != self_pid()) {
        pid = self_pid();
        tid = int(::syscall(SYS_gettid));
    }
    return tid;
}

// True when thread `tid` of process `pid` no longer exists (a process that is gone, zombie
// included, takes its threads with it).
inline bool thread_gone(int pid, int tid) noexcept {
    return process_gone(pid) || (::syscall(SYS_tgkill, pid, tid, 0) == -1 && errno == ESRCH);
}

}  // namespace multiprocessing::detail::posix
