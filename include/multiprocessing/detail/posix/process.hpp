// The POSIX calls behind Process: fork, a pidfd as the sentinel, waitpid, signals, CPU counts.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <optional>

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "syscall.hpp"

namespace multiprocessing::detail::posix {

// A descriptor that becomes readable when `pid` (our unreaped child) ends.
inline unique_fd open_pidfd(int pid) {
    return unique_fd(int(check(MP_SYSCALL(::syscall(SYS_pidfd_open, pid, 0)), "pidfd_open")));
}

// A pidfd for any process, or an empty descriptor when it is already gone.
inline unique_fd open_pidfd_or_gone(int pid) {
    long fd = MP_SYSCALL(::syscall(SYS_pidfd_open, pid, 0));
    if (fd == -1 && errno != ESRCH) throw_errno("pidfd_open");
    return unique_fd(int(fd));
}

// Python's returncode: the exit status, or -N when killed by signal N.
inline int decode_wait_status(int status) noexcept {
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

// Reaps `pid` if it ended (or waits for it when `block`); nullopt while it runs.
inline std::optional<int> reap(int pid, bool block) {
    int status = 0;
    int r = retry([&] { return MP_SYSCALL(::waitpid(pid, &status, block ? 0 : WNOHANG)); });
    if (r == 0) return std::nullopt;
    if (r == -1) throw_errno("waitpid");
    return decode_wait_status(status);
}

// Sends `sig` unless the process is already gone.
inline void send_signal(int pid, int sig) {
    if (MP_SYSCALL(::kill(pid, sig)) == -1 && errno != ESRCH) throw_errno("kill");
}

// In a child: die with the parent. Returns false when the parent is already gone.
inline bool die_with_parent(int parent_pid) noexcept {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    return ::getppid() == parent_pid;
}

// Runs `last_words` when SIGTERM arrives, then dies of it as before (the exit code stays
// -SIGTERM), unless the process already handles or ignores SIGTERM.
inline void before_dying_of_sigterm(void (*last_words)() noexcept) noexcept {
    static std::atomic<void (*)() noexcept> words{nullptr};
    struct sigaction old {};
    if (::sigaction(SIGTERM, nullptr, &old) != 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
        return;
    words.store(last_words);
    struct sigaction sa {};
    sa.sa_handler = +[](int sig) {
        if (auto* f = words.load()) f();
        ::signal(sig, SIG_DFL);
        ::raise(sig);  // delivered once the handler returns
    };
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
}

inline int online_cpus() noexcept {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? int(n) : 1;
}

// The CPUs this process may run on (its affinity mask), as Python 3.13's process_cpu_count().
inline int affinity_cpus() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return online_cpus();
    int n = CPU_COUNT(&set);
    return n > 0 ? n : online_cpus();
}

}  // namespace multiprocessing::detail::posix
