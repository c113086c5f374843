// The one place that retries system calls on EINTR and turns errno into exceptions.
#pragma once

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

// Every system call of the library goes through this hook, so a test can wrap it to fake
// EINTR or a failure (the {fmt} way).
#ifndef MP_SYSCALL
#define MP_SYSCALL(call) call
#endif

#include "../timeout.hpp"

namespace multiprocessing::detail::posix {

// Repeats `f` while it fails with EINTR; returns its last result.
template <class F>
auto retry(F&& f) {
    for (;;) {
        auto r = f();
        if (!(r == -1 && errno == EINTR)) return r;
    }
}

[[noreturn]] inline void throw_errno(const char* what, int err = errno) {
    throw std::system_error(err, std::generic_category(), what);
}

// Throws std::system_error naming `what` when `r` is -1.
template <class R>
R check(R r, const char* what) {
    if (r == -1) throw_errno(what);
    return r;
}

// An owned file descriptor; -1 when empty.
class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        // close() is not retried on EINTR: on Linux the descriptor is gone either way.
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// A close-on-exec pipe: [0] reads, [1] writes.
inline void make_pipe(unique_fd& r, unique_fd& w) {
    int fds[2];
    check(MP_SYSCALL(::pipe2(fds, O_CLOEXEC)), "pipe2");
    r.reset(fds[0]);
    w.reset(fds[1]);
}

inline std::int64_t monotonic_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Waits until `fd` is readable or `until` passes. Returns true when readable (or hung up).
inline bool wait_readable(int fd, deadline until) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int r = MP_SYSCALL(::poll(&p, 1, until.poll_ms()));
        if (r > 0) return true;
        if (r == -1 && errno != EINTR) throw_errno("poll");
        if (r == 0 && until.expired()) return false;
    }
}

// Fills `buf` with random bytes from the kernel (Python: os.urandom).
inline void random_bytes(void* buf, std::size_t n) {
    auto* p = static_cast<unsigned char*>(buf);
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = MP_SYSCALL(::getrandom(p + got, n - got, 0));
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        got += std::size_t(r);
    }
}

}  // namespace multiprocessing::detail::posix
