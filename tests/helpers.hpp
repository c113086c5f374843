// What several test programs need: children that report a failed check through their exit code,
// and waiting for a process that is not ours to be gone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <multiprocessing/detail/posix/futex.hpp>
#include <multiprocessing/detail/timeout.hpp>
#include <multiprocessing/process.hpp>

namespace test {

// In a child: a failed check becomes an exception, which the child reports and exits 1 with.
inline void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

// Starts `f(args...)` in a child process.
template <class F, class... A>
multiprocessing::Process start(F f, A... args) {
    multiprocessing::Process p(f, args...);
    p.start();
    return p;
}

// Joins a child (a bounded wait: a hang fails the test) and returns its exit code.
inline int finish(multiprocessing::Process& p, std::chrono::seconds limit = std::chrono::seconds(20)) {
    REQUIRE(p.join(limit));
    REQUIRE(p.exitcode().has_value());
    return *p.exitcode();
}

// A value another process publishes (a pid, a flag) in shared memory: set and wake...
inline void publish(std::atomic<int>& word, int value) {
    word.store(value);
    multiprocessing::detail::posix::futex_wake_all(reinterpret_cast<std::atomic<std::uint32_t>*>(&word));
}

// ...and wait for it on the futex, not by polling: the value, or 0 when `limit` passes first.
inline int wait_published(std::atomic<int>& word, std::chrono::milliseconds limit) {
    auto deadline = multiprocessing::detail::deadline_after(limit);
    int v;
    while ((v = word.load()) == 0) {
        if (multiprocessing::detail::remaining_ns(deadline) == 0) return 0;
        multiprocessing::detail::posix::futex_wait(
            reinterpret_cast<std::atomic<std::uint32_t>*>(&word), 0, deadline);
    }
    return v;
}

// Waits for a process that is not our child to end: its pidfd becomes readable.
inline bool gone_within(int pid, int ms) {
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return errno == ESRCH;
    pollfd p{int(fd), POLLIN, 0};
    int r = ::poll(&p, 1, ms);
    ::close(int(fd));
    return r == 1;
}

}  // namespace test
