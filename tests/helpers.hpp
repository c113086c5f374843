// What several test programs need: children that report a failed check through their exit code,
// and waiting for a process that is not ours to be gone.
#pragma once

#include <chrono>
#include <stdexcept>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
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
