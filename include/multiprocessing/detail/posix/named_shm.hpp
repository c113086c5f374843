// Named POSIX shared memory (/dev/shm) for SharedMemory, and the process side of the resource
// tracker that unlinks segments whose creators died without unlinking them.
#pragma once

#include <array>
#include <climits>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm.hpp"
#include "syscall.hpp"

namespace multiprocessing::detail::posix {

// `bytes` random bytes from getrandom(2), as lowercase hex.
inline std::string random_hex(std::size_t bytes) {
    std::array<unsigned char, 64> raw{};
    if (bytes > raw.size()) bytes = raw.size();
    std::size_t got = 0;
    while (got < bytes) {
        ssize_t r = MP_SYSCALL(::getrandom(raw.data() + got, bytes - got, 0));
        if (r == -1) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        got += std::size_t(r);
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (std::size_t i = 0; i < bytes; ++i) {
        out += digits[raw[i] >> 4];
        out += digits[raw[i] & 15];
    }
    return out;
}

// "/mp-" and 128 random bits: unguessable, and the prefix lets tests find our leftovers.
inline std::string random_shm_name() { return "/mp-" + random_hex(16); }

// Creates the segment `name` (with its leading slash) exclusively, readable by its owner only.
// Returns an empty fd when the name is taken (EEXIST); throws on other failures.
inline unique_fd shm_create(const std::string& name) {
    int fd = MP_SYSCALL(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (fd == -1) {
        if (errno == EEXIST) return unique_fd();
        throw_errno("shm_open");
    }
    return unique_fd(fd);
}

inline unique_fd shm_attach(const std::string& name) {
    return unique_fd(check(MP_SYSCALL(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0)), "shm_open"));
}

inline void shm_remove(const std::string& name) {
    check(MP_SYSCALL(::shm_unlink(name.c_str())), "shm_unlink");
}

inline bool shm_remove(const std::string& name, std::nothrow_t) noexcept {
    return MP_SYSCALL(::shm_unlink(name.c_str())) == 0;
}

// ---- The tracker process ----------------------------------------------------------------------
//
// Creators send fixed-size records over a SOCK_SEQPACKET socket whose sending end every
// descendant inherits. Each record is one atomic message, and send(MSG_NOSIGNAL) cannot raise
// SIGPIPE if the tracker is gone (a pipe could). When every sending end is closed, whatever
// the reason (SIGKILL included), the tracker's recv() returns 0 and it unlinks what is left.

struct tracker_record {
    char op;                  // 'R' register, 'U' unregister
    char name[NAME_MAX + 2];  // NUL-terminated, leading slash included
};
static_assert(sizeof(tracker_record) <= PIPE_BUF);

// The tracker's whole life. It runs in a child forked from a possibly multithreaded process,
// so it makes raw system calls only: no allocation, no locks, no stdio.
[[noreturn]] inline void tracker_main(int fd) noexcept {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    // Outlive Ctrl-C, a closed terminal and kill(): its job starts when everybody else is gone.
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::sigaction(sig, &ign, nullptr);
    // Hold no other descriptor (a pipe end kept open here would keep some reader waiting).
    if (fd > 0) ::syscall(SYS_close_range, 0u, unsigned(fd - 1), 0u);
    ::syscall(SYS_close_range, unsigned(fd + 1), ~0u, 0u);
    (void)::chdir("/");

    tracker_record* table = nullptr;
    std::size_t used = 0, capacity = 0;
    tracker_record rec;
    for (;;) {
        ssize_t n = ::recv(fd, &rec, sizeof rec, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (std::size_t(n) != sizeof rec) continue;
        rec.name[sizeof rec.name - 1] = '\0';
        std::size_t i = 0;
        while (i < used && std::strcmp(table[i].name, rec.name) != 0) ++i;
        if (rec.op == 'U') {
            if (i < used) table[i] = table[--used];
        } else if (rec.op == 'R' && i == used) {
            if (used == capacity) {
                std::size_t grown = capacity ? capacity * 2 : 64;
                void* p = capacity ? ::mremap(table, capacity * sizeof rec, grown * sizeof rec,
                                              MREMAP_MAYMOVE)
                                   : ::mmap(nullptr, grown * sizeof rec, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) continue;  // cannot track more; keep what we have
                table = static_cast<tracker_record*>(p);
                capacity = grown;
            }
            table[used++] = rec;
        }
    }
    for (std::size_t i = 0; i < used; ++i) ::shm_unlink(table[i].name);
    ::_exit(0);
}

// Starts a tracker and returns the sending end (close-on-exec). The tracker is a grandchild:
// the intermediate child exits at once, so init adopts the tracker and it is never our zombie.
inline unique_fd start_tracker() {
    int sv[2];
    check(MP_SYSCALL(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)), "socketpair");
    unique_fd receiver(sv[0]), sender(sv[1]);
    // _Fork runs no atfork handlers: async-signal-safe in a child of a threaded process, and
    // neither child takes references to the parent's shared objects (detail/heap.hpp).
    pid_t pid = MP_SYSCALL(::_Fork());
    if (pid == -1) throw_errno("fork");
    if (pid == 0) {
        pid_t t = ::_Fork();
        if (t == 0) tracker_main(sv[0]);
        ::_exit(t == -1 ? 1 : 0);
    }
    int status = 0;
    pid_t r = retry([&] { return MP_SYSCALL(::waitpid(pid, &status, 0)); });
    // ECHILD: somebody else's SIGCHLD handler reaped it; the status is lost but the tracker runs.
    if (r == pid && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        throw std::system_error(EAGAIN, std::generic_category(), "start resource tracker");
    return sender;
}

// Sends one record; false when the tracker cannot be reached or the name does not fit.
inline bool send_tracker_record(int fd, char op, std::string_view name) noexcept {
    tracker_record rec{};
    if (fd < 0 || name.size() >= sizeof rec.name) return false;
    rec.op = op;
    std::memcpy(rec.name, name.data(), name.size());
    ssize_t r = retry([&] { return MP_SYSCALL(::send(fd, &rec, sizeof rec, MSG_NOSIGNAL)); });
    return r == ssize_t(sizeof rec);
}

}  // namespace multiprocessing::detail::posix
