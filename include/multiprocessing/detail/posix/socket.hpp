// The descriptor I/O behind Connection: full read/write loops, a non-blocking read that does not
// touch the shared file status flags, polling of several descriptors, the SIGPIPE guard and the
// CPU-affinity probe of the adaptive spin.
//
// Pipe() is built on pipe2(2), not on an AF_UNIX socketpair as in CPython: a pipe round trip
// costs half as much as a stream-socket one (4 us against 8 us between two processes pinned to
// one CPU here), and a pipe holds 64 KiB. Pipes have no MSG_NOSIGNAL, so a write to a pipe whose
// readers are gone raises SIGPIPE; sigpipe_guard turns exactly those SIGPIPEs into EPIPE and
// leaves every other SIGPIPE of the program its default action.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <csignal>
#include <vector>

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include "syscall.hpp"

namespace multiprocessing::detail::posix {

// ---- SIGPIPE --------------------------------------------------------------------------------

// Set while this thread writes to a connection; read by the SIGPIPE handler of the same thread
// (the kernel sends the SIGPIPE of a failed write to the writing thread).
inline thread_local constinit volatile std::sig_atomic_t in_connection_write = 0;

inline void sigpipe_handler(int sig, siginfo_t* info, void*) {
    // Ours: raised by the kernel for our own write (SI_USER from this very process). The write
    // then fails with EPIPE, which Connection reports.
    if (in_connection_write && info && info->si_code == SI_USER && info->si_pid == ::getpid())
        return;
    // Anybody else's: the default action, as if we had never installed a handler.
    ::signal(sig, SIG_DFL);
    ::raise(sig);  // blocked until this handler returns, then kills the process
}

// Installs the handler when SIGPIPE has its default disposition (once per process image; a
// program that ignores SIGPIPE or handles it itself is left alone). A handler, unlike SIG_IGN,
// is reset by exec, so the programs this one runs keep the default.
inline void install_sigpipe_guard() {
    static std::atomic<bool> done{false};
    if (done.load(std::memory_order_acquire)) return;
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
        struct sigaction sa {};
        sa.sa_sigaction = &sigpipe_handler;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGPIPE, &sa, nullptr);
    }
    done.store(true, std::memory_order_release);
}

// Marks the writes of its scope as the connection's own.
struct sigpipe_scope {
    sigpipe_scope() noexcept {
        in_connection_write = 1;
        std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    ~sigpipe_scope() {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        in_connection_write = 0;
    }
    sigpipe_scope(const sigpipe_scope&) = delete;
    sigpipe_scope& operator=(const sigpipe_scope&) = delete;
};

// ---- writing --------------------------------------------------------------------------------

// Writes all of `iov[0..n)` (modified in place), retrying on EINTR and partial writes. Returns 0,
// or the errno of the failure (EPIPE when the readers are gone).
inline int write_all(int fd, iovec* iov, int n) {
    sigpipe_scope scope;
    while (n > 0) {
        ssize_t w = n == 1 ? MP_SYSCALL(::write(fd, iov->iov_base, iov->iov_len))
                           : MP_SYSCALL(::writev(fd, iov, n));
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        auto done = std::size_t(w);
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            ++iov;
            --n;
        }
        if (n > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

// ---- reading --------------------------------------------------------------------------------

// Reads until `n` bytes arrived or end of file; returns the count (< n only at end of file).
inline std::size_t read_full(int fd, void* buf, std::size_t n) {
    auto* p = static_cast<char*>(buf);
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = MP_SYSCALL(::read(fd, p + got, n - got));
        if (r > 0) {
            got += std::size_t(r);
        } else if (r == 0) {
            break;
        } else if (errno != EINTR) {
            throw_errno("read");
        }
    }
    return got;
}

enum class try_read_status : std::uint8_t { data, eof, empty, unsupported };

// One read that does not block (preadv2 with RWF_NOWAIT: O_NONBLOCK would change the descriptor
// for every process sharing it). Adds what it read to `got`.
inline try_read_status try_read(int fd, void* buf, std::size_t n, std::size_t& got) {
#ifdef RWF_NOWAIT
    iovec v{buf, n};
    for (;;) {
        ssize_t r = MP_SYSCALL(::preadv2(fd, &v, 1, -1, RWF_NOWAIT));
        if (r > 0) {
            got += std::size_t(r);
            return try_read_status::data;
        }
        if (r == 0) return try_read_status::eof;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return try_read_status::empty;
        if (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)
            return try_read_status::unsupported;
        throw_errno("preadv2");
    }
#else
    (void)fd, (void)buf, (void)n, (void)got;
    return try_read_status::unsupported;
#endif
}

// True when `fd` is readable (or hung up) right now.
inline bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    int r = retry([&] { return MP_SYSCALL(::poll(&p, 1, 0)); });
    if (r < 0) throw_errno("poll");
    return r > 0;
}

// ---- waiting on several descriptors ---------------------------------------------------------

// Polls `fds` for input until one is ready or `until` passes. Returns the number of ready
// entries (their revents set); 0 on timeout. A descriptor that is not open throws EBADF.
inline int poll_until(std::vector<pollfd>& fds, deadline until) {
    for (;;) {
        int r = MP_SYSCALL(::poll(fds.data(), nfds_t(fds.size()), until.poll_ms()));
        if (r > 0) {
            for (const auto& p : fds)
                if (p.revents & POLLNVAL) throw_errno("wait: not an open descriptor", EBADF);
            return r;
        }
        if (r < 0 && errno != EINTR) throw_errno("poll");
        if (until.expired()) return 0;
    }
}

// ---- CPU affinity ---------------------------------------------------------------------------

// True when this thread may run on more than one CPU (spinning can then wait for a peer running
// elsewhere; on one CPU it would only steal the peer's time).
inline bool several_cpus_allowed() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return true;  // > CPU_SETSIZE CPUs
    return CPU_COUNT(&set) > 1;
}

}  // namespace multiprocessing::detail::posix
