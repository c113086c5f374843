// Python: multiprocessing.resource_tracker. Unlinks the named shared memory segments that the
// program created and did not unlink, once the whole process tree that uses the tracker has
// exited, even when its processes were killed with SIGKILL.
//
// One tracker serves the process that started it and every descendant started afterwards:
// forked ones inherit its socket, spawned and forkserver ones are handed it with their start
// record (process.hpp, adopt()). Like Python's, it cleans up at the end of the program, not when
// the creating process ends: a segment created by a child stays usable by its parent. A parent
// that has no tracker yet hands none over, under every start method alike: a child that creates
// a segment then starts a tracker of its own, which unlinks the segment when that child and its
// descendants have ended (call ensure_running() before starting the child to share one).
#pragma once

#include <atomic>
#include <mutex>
#include <string_view>

#include <fcntl.h>

#include "posix/named_shm.hpp"

namespace multiprocessing::detail {

class resource_tracker {
public:
    static resource_tracker& instance() {
        static resource_tracker t;
        return t;
    }

    // Python: resource_tracker.ensure_running(). Starts the tracker unless this process or an
    // ancestor already did.
    void ensure_running() {
        if (fd_.load(std::memory_order_acquire) >= 0) return;
        std::lock_guard lock(start_);
        if (fd_.load(std::memory_order_relaxed) >= 0) return;
        fd_.store(posix::start_tracker().release(), std::memory_order_release);
    }

    // Python: resource_tracker.register(name, "shared_memory") / unregister(...).
    // `name` has its leading slash. Best effort: a segment that cannot be tracked still works.
    void register_shm(std::string_view name) {
        ensure_running();
        posix::send_tracker_record(fd_.load(std::memory_order_acquire), 'R', name);
    }
    void unregister_shm(std::string_view name) noexcept {
        posix::send_tracker_record(fd_.load(std::memory_order_acquire), 'U', name);
    }

    // Forgets an inherited tracker, so the next segment starts a new one that this process
    // tree alone keeps alive (a child that must clean up when it ends, not when the program
    // does; the tests use it).
    void detach() noexcept {
        int fd = fd_.exchange(-1, std::memory_order_acq_rel);
        posix::unique_fd closing(fd);
    }

    // The sending end a spawned child must be handed; -1 when no tracker runs.
    int fd() const noexcept { return fd_.load(std::memory_order_acquire); }

    // A spawned or forkserver child's side: uses its parent's tracker, whose sending end `fd`
    // it was handed (a duplicate is kept, close-on-exec). Best effort, as registering is.
    void adopt(int fd) noexcept {
        int mine = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (mine < 0) return;
        std::lock_guard lock(start_);
        posix::unique_fd old(fd_.exchange(mine, std::memory_order_acq_rel));
    }

private:
    resource_tracker() = default;
    std::atomic<int> fd_{-1};
    std::mutex start_;
};

}  // namespace multiprocessing::detail
