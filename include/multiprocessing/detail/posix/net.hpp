// The socket calls behind Listener, Client and the manager server: Unix (filesystem and Linux's
// abstract namespace) and IPv4 stream sockets, accept/connect retried on EINTR, reads with a
// deadline for the handshake, and random bytes from getrandom(2).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "syscall.hpp"

namespace multiprocessing::detail::posix {

// A socket address of either family, as the kernel takes it.
struct socket_address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
    int family() const noexcept { return storage.ss_family; }
};

// A Unix socket address; a path starting with '\0' names Linux's abstract namespace (no file,
// gone with the last descriptor), as in Python.
inline socket_address unix_address(std::string_view path) {
    socket_address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    if (path.size() >= sizeof un->sun_path)
        throw std::system_error(ENAMETOOLONG, std::generic_category(),
                                "AF_UNIX path too long (at most " +
                                    std::to_string(sizeof un->sun_path - 1) + " bytes)");
    std::memcpy(un->sun_path, path.data(), path.size());
    // Abstract names are exactly as long as given; paths are NUL-terminated.
    a.length = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() +
                         (path.empty() || path[0] != '\0' ? 1 : 0));
    return a;
}

// An IPv4 address; `host` is a dotted quad or a name to resolve ("" and "0.0.0.0" mean any).
inline socket_address inet_address(const std::string& host, int port) {
    if (port < 0 || port > 65535)
        throw std::system_error(EINVAL, std::generic_category(),
                                "port must be 0-65535, not " + std::to_string(port));
    socket_address a;
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(std::uint16_t(port));
    a.length = sizeof(sockaddr_in);
    if (host.empty()) {
        in->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (::inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
        if (rc != 0 || !res)
            throw std::system_error(EHOSTUNREACH, std::generic_category(),
                                    "cannot resolve host '" + host + "': " + ::gai_strerror(rc));
        in->sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
        ::freeaddrinfo(res);
    }
    return a;
}

// The (host, port) or path of an address the kernel gave back.
struct address_parts {
    bool unix_family = true;
    std::string host_or_path;
    int port = 0;
};

inline address_parts parts_of(const socket_address& a) {
    address_parts p;
    if (a.family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
        char buf[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        p.unix_family = false;
        p.host_or_path = buf;
        p.port = ntohs(in->sin_port);
    } else if (a.family() == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&a.storage);
        std::size_t n = a.length > offsetof(sockaddr_un, sun_path)
                            ? std::size_t(a.length) - offsetof(sockaddr_un, sun_path)
                            : 0;
        if (n > 0 && un->sun_path[0] != '\0') n = ::strnlen(un->sun_path, n);
        p.host_or_path.assign(un->sun_path, n);
    }
    return p;
}

inline unique_fd stream_socket(int family) {
    return unique_fd(check(MP_SYSCALL(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)), "socket"));
}

// Python: SocketListener.__init__: SO_REUSEADDR for TCP, bind, listen.
inline unique_fd listen_on(const socket_address& a, int backlog) {
    unique_fd fd = stream_socket(a.family());
    if (a.family() == AF_INET) {
        int one = 1;
        check(MP_SYSCALL(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)),
              "setsockopt(SO_REUSEADDR)");
    }
    check(MP_SYSCALL(::bind(fd.get(), a.get(), a.length)), "bind");
    check(MP_SYSCALL(::listen(fd.get(), backlog)), "listen");
    return fd;
}

inline socket_address local_address(int fd) {
    socket_address a;
    a.length = sizeof a.storage;
    check(MP_SYSCALL(::getsockname(fd, a.get(), &a.length)), "getsockname");
    return a;
}

// Small request-reply messages must not wait for Nagle's algorithm.
inline void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Accepts one connection (close-on-exec); fills `peer`. Retries on EINTR and on connections
// that were reset before we took them. Throws std::system_error; EINVAL once the listening
// socket was shut down.
inline unique_fd accept_on(int listen_fd, socket_address& peer) {
    for (;;) {
        peer.length = sizeof peer.storage;
        int fd = MP_SYSCALL(::accept4(listen_fd, peer.get(), &peer.length, SOCK_CLOEXEC));
        if (fd >= 0) {
            if (peer.family() == AF_INET) set_nodelay(fd);
            return unique_fd(fd);
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        throw_errno("accept");
    }
}

// Connects a new socket to `a` (blocking). An interrupted connect completes in the background,
// so EINTR waits for it instead of connecting again.
inline unique_fd connect_to(const socket_address& a) {
    unique_fd fd = stream_socket(a.family());
    if (MP_SYSCALL(::connect(fd.get(), a.get(), a.length)) == -1) {
        if (errno != EINTR) throw_errno("connect");
        pollfd p{fd.get(), POLLOUT, 0};
        if (retry([&] { return MP_SYSCALL(::poll(&p, 1, -1)); }) < 0) throw_errno("poll");
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) throw_errno("connect", err);
    }
    if (a.family() == AF_INET) set_nodelay(fd.get());
    return fd;
}

enum class read_status : std::uint8_t { done, eof, timeout };

// Reads exactly `n` bytes unless end of file or its deadline comes first;
// `got` says how many arrived. Reads nothing beyond `n`, so a Connection can carry on after it.
inline read_status read_until(int fd, void* buf, std::size_t n, deadline until,
                              std::size_t& got) {
    auto* p = static_cast<char*>(buf);
    got = 0;
    while (got < n) {
        if (!wait_readable(fd, until)) return read_status::timeout;
        ssize_t r = MP_SYSCALL(::read(fd, p + got, n - got));
        if (r > 0) {
            got += std::size_t(r);
        } else if (r == 0) {
            return read_status::eof;
        } else if (errno != EINTR && errno != EAGAIN) {
            if (errno == ECONNRESET) return read_status::eof;
            throw_errno("read");
        }
    }
    return read_status::done;
}

// Sends `n` descriptors over a Unix socket, with one byte of data (Python:
// reduction.sendfds).
inline void send_fds(int sock, const int* fds, int n) {
    char byte = 'F';
    iovec v{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    if (n < 1 || n > 4) throw_errno("send_fds", EINVAL);
    msghdr msg{};
    msg.msg_iov = &v;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * std::size_t(n));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * std::size_t(n));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * std::size_t(n));
    if (retry([&] { return MP_SYSCALL(::sendmsg(sock, &msg, MSG_NOSIGNAL)); }) != 1)
        throw_errno("sendmsg");
}

// Receives exactly `n` descriptors sent by send_fds (close-on-exec) before the deadline; false
// on timeout, end of file or anything else arriving instead.
inline bool recv_fds(int sock, unique_fd* out, int n, deadline until) {
    if (n < 1 || n > 4) return false;
    if (!wait_readable(sock, until)) return false;
    char byte = 0;
    iovec v{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &v;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r = retry([&] { return MP_SYSCALL(::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)); });
    if (r != 1) return false;
    int got = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (got < n)
                out[got++].reset(fd);
            else
                ::close(fd);
        }
    }
    return got == n && byte == 'F' && !(msg.msg_flags & MSG_CTRUNC);
}

}  // namespace multiprocessing::detail::posix
