// Python: multiprocessing.forkserver and popen_forkserver. A server process, a fresh image of
// this executable started on first use (so none of the parent's threads or held locks), forks a
// child for each request. It dies with the parent, also when the parent is SIGKILLed (parent-
// death signal, and end of file on its socket). The server waits for its children and reports
// each one's exit status on a pipe that the parent uses as the child's sentinel.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../detail/posix/process.hpp"
#include "../detail/posix/socket.hpp"
#include "../process.hpp"
#include "spawn.hpp"

namespace multiprocessing::detail::forkserver {

inline constexpr std::size_t max_fds = 250;  // SCM_RIGHTS holds up to 253

// A one-buffer message with room for `nfds` descriptors (SCM_RIGHTS).
struct fd_message {
    std::vector<char> control;
    iovec iov;
    msghdr msg{};
    fd_message(void* head, std::size_t size, std::size_t nfds)
        : control(CMSG_SPACE(sizeof(int) * nfds)), iov{head, size} {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
    }
    fd_message(const fd_message&) = delete;
    fd_message& operator=(const fd_message&) = delete;
};

// A request: a header with SCM_RIGHTS (the status pipe, the parent's stdin, stdout and stderr,
// then the handles), then the record. The child's output goes where the parent's goes now, not
// where the server's went when it started.
inline constexpr std::size_t leading_fds = 4;

inline void send_request(int sock, int status_fd, const std::vector<int>& fds,
                         std::span<const std::byte> record) {
    if (fds.size() + leading_fds > max_fds)
        throw ValueError("multiprocessing: too many handles for one forkserver child");
    std::uint64_t head[2] = {fds.size() + leading_fds, record.size()};
    std::vector<int> all{status_fd, 0, 1, 2};
    all.insert(all.end(), fds.begin(), fds.end());
    fd_message m(head, sizeof head, all.size());
    msghdr& msg = m.msg;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * all.size());
    std::memcpy(CMSG_DATA(c), all.data(), sizeof(int) * all.size());
    if (posix::retry([&] { return ::sendmsg(sock, &msg, MSG_NOSIGNAL); }) != ssize_t(sizeof head))
        posix::throw_errno("sendmsg");
    write_frame(sock, record);
}

// The server's side of a request; false at end of file (the parent is gone).
inline bool receive_request(int sock, std::vector<int>& fds, std::vector<std::byte>& record) {
    std::uint64_t head[2] = {0, 0};
    fd_message m(head, sizeof head, max_fds);
    msghdr& msg = m.msg;
    ssize_t n = posix::retry([&] { return ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); });
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return false;  // the parent is gone
    if (n < 0) posix::throw_errno("forkserver: recvmsg");
    if (n != ssize_t(sizeof head)) throw ProcessError("forkserver: a request was cut short");
    fds.clear();
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            fds.resize(k);
            std::memcpy(fds.data(), CMSG_DATA(c), k * sizeof(int));
        }
    if (fds.size() != head[0] || fds.size() < leading_fds)
        throw ProcessError("forkserver: descriptors went missing");
    record = read_frame(sock);
    return true;
}

struct child {
    int pid;
    posix::unique_fd pidfd, status;
};

// The server: never returns.
// No parent-death signal here: it would follow the parent's *thread* that started the server
// (often a Pool's handler thread), not the parent. End of file on the socket is the signal: the
// kernel closes the parent's end when the parent dies, SIGKILL included.
[[noreturn]] inline void serve(int sock) {
    std::vector<child> children;
    std::vector<int> fds;
    std::vector<std::byte> record;
    for (;;) {
        std::vector<pollfd> p{{sock, POLLIN, 0}};
        for (auto& c : children) p.push_back({c.pidfd.get(), POLLIN, 0});
        if (::poll(p.data(), p.size(), -1) == -1 && errno != EINTR) ::_exit(1);
        for (std::size_t i = children.size(); i-- > 0;) {
            if (!p[i + 1].revents) continue;
            int code = posix::reap(children[i].pid, true).value_or(255);
            iovec iov{&code, sizeof code};
            posix::write_all(children[i].status.get(), &iov, 1);
            children.erase(children.begin() + std::ptrdiff_t(i));
        }
        if (!p[0].revents) continue;
        try {
            if (!receive_request(sock, fds, record)) ::_exit(0);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "multiprocessing forkserver: %s\n", e.what());
            ::_exit(1);
        }
        posix::unique_fd status(fds[0]);
        pid_t pid = ::fork();
        if (pid == 0) {
            forget_pid();
            ::close(sock);
            for (auto& c : children) {
                c.pidfd.reset();
                c.status.reset();
            }
            status.reset();
            for (int std_fd = 0; std_fd < 3; ++std_fd) {
                ::dup2(fds[std::size_t(std_fd) + 1], std_fd);
                ::close(fds[std::size_t(std_fd) + 1]);
            }
            run_start_record(record, std::vector<int>(fds.begin() + leading_fds, fds.end()), -1);
        }
        for (std::size_t i = 1; i < fds.size(); ++i) ::close(fds[i]);
        int reply = pid;
        iovec iov{&reply, sizeof reply};
        posix::write_all(sock, &iov, 1);
        if (pid > 0) children.push_back({pid, posix::open_pidfd(pid), std::move(status)});
    }
}

// The parent's connection to its server, started on first use.
struct client {
    std::mutex mutex;
    posix::unique_fd sock;
    int server_pid = 0;
};

// In a forked child: the parent's server is not ours; close our copy of the socket, so that the
// server sees end of file when the parent dies, whoever else is still running.
inline void forget_server_after_fork() noexcept;

inline client& the_client() {
    // Never destroyed: at exit, the children are joined (through the server) after static
    // destructors may have run, and closing the socket would stop the server under them.
    static client& c = *new client;
    static const bool registered = (::pthread_atfork(nullptr, nullptr, &forget_server_after_fork), true);
    (void)registered;
    return c;
}

inline void forget_server_after_fork() noexcept {
    auto& c = the_client();
    ::new (&c.mutex) std::mutex;
    if (c.sock) ::close(c.sock.release());
    c.server_pid = 0;
}

// Starts a child through the server; returns its pid and the read end of its status pipe.
inline int request(std::span<const std::byte> record, const std::vector<int>& fds,
                   posix::unique_fd& status_read) {
    auto& c = the_client();
    std::lock_guard lock(c.mutex);
    if (!c.sock) {
        std::vector<int> landed;
        c.server_pid = spawn_self(forkserver_env, {}, c.sock, landed);
    }
    posix::unique_fd status_write;
    posix::make_pipe(status_read, status_write);
    send_request(c.sock.get(), status_write.get(), fds, record);
    status_write.reset();
    int pid = 0;
    if (posix::read_full(c.sock.get(), &pid, sizeof pid) != sizeof pid || pid <= 0)
        throw ProcessError("forkserver: the server could not start the process");
    return pid;
}

}  // namespace multiprocessing::detail::forkserver

namespace multiprocessing::popen {

// Python: multiprocessing.popen_forkserver.Popen. The child is the server's, not ours: its exit
// status comes on the status pipe, which is also its sentinel.
class PopenForkserver final : public Popen {
public:
    PopenForkserver(std::span<const std::byte> record, const std::vector<int>& fds) {
        flush_std_streams();
        int pid = detail::forkserver::request(record, fds, status_);
        adopt_foreign(pid, status_.get());
    }
    const char* method() const noexcept override { return "forkserver"; }

protected:
    std::optional<int> reap_now(bool block) override {
        if (block) detail::posix::wait_readable(status_.get(), detail::forever);
        else if (!detail::posix::readable_now(status_.get())) return std::nullopt;
        int code = 0;
        if (detail::posix::read_full(status_.get(), &code, sizeof code) != sizeof code)
            return 255;  // the server died before the child: its status is lost
        return code;
    }

private:
    detail::posix::unique_fd status_;
};

inline std::unique_ptr<Popen> make_forkserver_popen(std::span<const std::byte> record,
                                                    const std::vector<int>& fds) {
    return std::make_unique<PopenForkserver>(record, fds);
}

}  // namespace multiprocessing::popen

namespace multiprocessing::detail {

// The server's entry, in the fresh image, before main(); and the hook Process::start uses.
inline bool forkserver_entry() {
    popen_factory::forkserver = &popen::make_forkserver_popen;
    const char* fd_text = std::getenv(forkserver_env);
    if (!fd_text) return false;
    int fd = std::atoi(fd_text);
    ::unsetenv(forkserver_env);
    forkserver::serve(fd);
}

inline const bool forkserver_entry_ran = forkserver_entry();

}  // namespace multiprocessing::detail
