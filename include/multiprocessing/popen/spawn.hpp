// Python: multiprocessing.popen_spawn_posix. A fresh image of the same executable
// (posix_spawn of /proc/self/exe): nothing of the parent's memory, threads or locks. The child
// learns what to run from a start record read from a socket; the descriptors of the handles it
// was given arrive inherited at the numbers the record lists.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../detail/posix/process.hpp"
#include "../detail/posix/socket.hpp"
#include "../errors.hpp"
#include "../serialization.hpp"
#include "fork.hpp"

extern char** environ;

namespace multiprocessing::detail {

// The environment variable that tells a fresh image it is a spawned child, and on which
// descriptor its start record waits. Forkserver's server is started the same way.
inline constexpr const char* spawn_env = "MP_SPAWN_FD";
inline constexpr const char* forkserver_env = "MP_FORKSERVER_FD";
// For tests only: the child ignores spawn_env, as a program without the bootstrap would.
inline constexpr const char* skip_bootstrap_env = "MP_SPAWN_SKIP_BOOTSTRAP";

// How long a parent waits for a spawned child to confirm that it reached the bootstrap.
inline constexpr std::int64_t spawn_ack_timeout_ns = 30'000'000'000;

inline std::string self_exe() {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) posix::throw_errno("readlink(/proc/self/exe)");
    return std::string(buf, std::size_t(n));
}

// Writes a length-prefixed frame; reads one, refusing lengths over `limit`.
// (On a socket, with MSG_NOSIGNAL: a child that died early must not kill us with SIGPIPE.)
inline void write_frame(int sock, std::span<const std::byte> data) {
    std::uint64_t n = data.size();
    auto send_all = [sock](const void* p, std::size_t len) {
        const auto* b = static_cast<const char*>(p);
        while (len) {
            ssize_t w = ::send(sock, b, len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) posix::throw_errno("send");
            b += w;
            len -= std::size_t(w);
        }
    };
    send_all(&n, sizeof n);
    send_all(data.data(), data.size());
}
inline std::vector<std::byte> read_frame(int fd, std::uint64_t limit = std::uint64_t(1) << 32) {
    std::uint64_t n = 0;
    if (posix::read_full(fd, &n, sizeof n) != sizeof n)
        throw ProcessError("multiprocessing: the start record was cut short");
    if (n > limit) throw ProcessError("multiprocessing: a start record is implausibly large");
    std::vector<std::byte> out(static_cast<std::size_t>(n));
    if (posix::read_full(fd, out.data(), out.size()) != out.size())
        throw ProcessError("multiprocessing: the start record was cut short");
    return out;
}

// Runs a fresh image of this executable with `env_name`=<descriptor of a socket> and the
// descriptors `pass` inherited; returns its pid and our end of the socket.
inline int spawn_self(const char* env_name, const std::vector<int>& pass, posix::unique_fd& sock,
                      std::vector<int>& landed) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
        posix::throw_errno("socketpair");
    sock.reset(sv[0]);
    posix::unique_fd child_end(sv[1]);

    // Land the descriptors above every source, so that no dup2 overwrites one still to come.
    int base = child_end.get();
    for (int fd : pass) base = std::max(base, fd);
    ++base;
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    landed.clear();
    for (std::size_t i = 0; i < pass.size(); ++i) {
        ::posix_spawn_file_actions_adddup2(&actions, pass[i], base + int(i));
        landed.push_back(base + int(i));
    }
    const int control = base + int(pass.size());
    ::posix_spawn_file_actions_adddup2(&actions, child_end.get(), control);

    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e)
        if (std::strncmp(*e, "MP_SPAWN_FD=", 12) != 0 && std::strncmp(*e, "MP_FORKSERVER_FD=", 17) != 0)
            env_strings.emplace_back(*e);
    env_strings.push_back(std::string(env_name) + "=" + std::to_string(control));
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);

    std::string exe = self_exe();
    std::string arg0 = program_invocation_name ? program_invocation_name : exe;
    char* argv[] = {arg0.data(), nullptr};
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) posix::throw_errno("posix_spawn", rc);
    return pid;
}

// Waits for the child's one-byte "I reached the bootstrap"; false if it ended or was silent.
inline bool wait_for_ack(int sock, int pid) {
    auto pidfd = posix::open_pidfd_or_gone(pid);
    auto deadline = detail::deadline_after(std::chrono::nanoseconds(spawn_ack_timeout_ns));
    for (;;) {
        pollfd p[2] = {{sock, POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
        if (deadline.expired()) return false;
        int r = ::poll(p, pidfd ? 2 : 1, deadline.poll_ms());
        if (r == -1 && errno == EINTR) continue;
        if (r == -1) posix::throw_errno("poll");
        if (p[0].revents) {
            char c = 0;
            try {
                return posix::read_full(sock, &c, 1) == 1 && c == 'R';
            } catch (const std::system_error&) {
                return false;  // reset: the child closed its end with our record unread
            }
        }
        if (r > 0 && p[1].revents) return false;  // ended without a word
    }
}

}  // namespace multiprocessing::detail

namespace multiprocessing::popen {

// Python: multiprocessing.popen_spawn_posix.Popen
class PopenSpawn final : public Popen {
public:
    // `record` is the start record; `pass` the descriptors its handles refer to (in order).
    PopenSpawn(std::span<const std::byte> record, const std::vector<int>& pass) {
        flush_std_streams();
        detail::posix::unique_fd sock;
        std::vector<int> landed;
        int pid = detail::spawn_self(detail::spawn_env, pass, sock, landed);
        adopt(pid);
        try {
            // Where the descriptors landed, then the record itself.
            detail::write_frame(sock.get(), serialize(landed));
            detail::write_frame(sock.get(), record);
        } catch (...) {
            // The child may be gone already; its exit code tells the story below.
        }
        if (!detail::wait_for_ack(sock.get(), pid)) {
            send_signal(SIGKILL);
            auto rc = wait(detail::forever);
            throw ProcessError(
                "multiprocessing: the spawned child (pid " + std::to_string(pid) +
                ") did not reach the library's bootstrap and exited with " +
                std::to_string(rc.value_or(0)) +
                ". Spawn runs this same executable again: it must be a program that includes "
                "<multiprocessing.hpp>, and its main() must not be what starts the child "
                "(see the README, 'Start methods')");
        }
    }
    const char* method() const noexcept override { return "spawn"; }
};

}  // namespace multiprocessing::popen
