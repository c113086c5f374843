// Python: multiprocessing.popen_fork. A Popen launches one child and then owns it: pid,
// returncode, a sentinel, wait, signals. The spawn and forkserver launchers will derive from
// Popen and override only the launch.
#pragma once

#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <utility>

#include "../detail/posix/process.hpp"
#include "../detail/runtime.hpp"
#include "../detail/timeout.hpp"

namespace multiprocessing::popen {

class Popen {
public:
    Popen(const Popen&) = delete;
    Popen& operator=(const Popen&) = delete;
    virtual ~Popen() = default;

    int pid() const noexcept { return pid_; }
    // Readable once the child has ended (a pidfd: grandchildren cannot keep it open).
    int sentinel() const noexcept { return sentinel_; }

    // Python: Popen.poll(); nullopt while the child runs.
    std::optional<int> poll() {
        std::lock_guard g(mutex_);
        if (!returncode_) returncode_ = reap_now(false);
        return returncode_;
    }

    // Python: Popen.wait(timeout); waits on the sentinel so that other threads may poll meanwhile.
    std::optional<int> wait(detail::deadline deadline_ns) {
        if (auto rc = poll()) return rc;
        if (!detail::posix::wait_readable(sentinel_, deadline_ns)) return std::nullopt;
        return poll();
    }

    void send_signal(int sig) {
        std::lock_guard g(mutex_);
        // Until we reap it, the pid cannot be reused, so the signal reaches our child or nobody.
        if (!returncode_) detail::posix::send_signal(pid_, sig);
    }

    virtual const char* method() const noexcept = 0;

protected:
    Popen() = default;

    // The child's exit status if it ended (waits for that when `block`); called under the lock.
    virtual std::optional<int> reap_now(bool block) { return detail::posix::reap(pid_, block); }

    // A child of the server's, not ours: its sentinel is given.
    void adopt_foreign(int pid, int sentinel) {
        pid_ = pid;
        sentinel_ = sentinel;
    }

    void adopt(int pid) {
        pid_ = pid;
        try {
            pidfd_ = detail::posix::open_pidfd(pid);
            sentinel_ = pidfd_.get();
        } catch (...) {
            // Without a sentinel the child could not be waited for: do not leave it behind.
            ::kill(pid, SIGKILL);
            detail::posix::reap(pid, true);
            throw;
        }
    }
    // Flushes what the parent buffered, so the child does not print it a second time.
    static void flush_std_streams() {
        std::fflush(nullptr);
        std::cout.flush();
        std::cerr.flush();
    }

private:
    std::mutex mutex_;
    int pid_ = 0;
    detail::posix::unique_fd pidfd_;
    int sentinel_ = -1;
    std::optional<int> returncode_;
};

// Python: multiprocessing.popen_fork.Popen
class PopenFork final : public Popen {
public:
    // Forks; the child runs `child_main()` (which must not throw) and exits with its result.
    template <class ChildMain>
    explicit PopenFork(ChildMain&& child_main) {
        flush_std_streams();
        pid_t pid = MP_SYSCALL(::fork());
        if (pid == -1) detail::posix::throw_errno("fork");
        if (pid == 0) {
            detail::forget_pid();
            int code = child_main();
            ::_exit(code);
        }
        adopt(pid);
    }
    const char* method() const noexcept override { return "fork"; }
};

}  // namespace multiprocessing::popen
