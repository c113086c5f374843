// Python: multiprocessing.connection (Pipe, Connection, wait).
//
//     auto [a, b] = mp::Pipe();               // duplex: both ends send and receive
//     auto [reader, writer] = mp::Pipe(false); // one-way: the first end receives (Python's order)
//     a.send(std::vector{1, 2, 3});  b.recv<std::vector<int>>();
//
// A Connection is a cheap copyable handle: copies refer to the same connection, close() closes
// it for every copy in this process, and a forked child inherits a working copy (its own
// descriptors, closed independently). Under spawn and forkserver, a Connection passed to a child
// as an argument travels as its descriptors (detail/fd_table.hpp), a closed one as closed. Connections are not meant to be used by two threads at once
// (neither are Python's), except that one thread may send while another receives.
//
// Transport: one pipe per direction. Each message is a frame: its length as a 64-bit host-order
// integer, then the bytes. A frame shorter than frame_head bytes is padded to frame_head, so the
// receiver reads exactly frame_head bytes first and gets a whole small message in one read(2),
// without reading ahead into the next message (read-ahead would hide data from poll/wait and be
// duplicated in a child forked later). Frames up to PIPE_BUF bytes are written atomically.
// Lengths are never trusted: a length above recv_bytes' maxlength is refused, and a long message
// is allocated in doubling chunks as its bytes actually arrive.
//
// Latency: a receiver on a machine with several CPUs polls without blocking for up to
// spin_limit before it sleeps (waking a sleeping process on another CPU costs more than the
// whole round trip), but only while recent messages arrived that quickly, so an idle receiver
// does not burn a CPU. The spin yields the CPU after a few microseconds, and at once when recent
// messages came only after a yield (the peer then shares our CPU and needs it to answer). Pinned
// to a single CPU it never spins. The affinity is re-read every 256 receives.
//
// Errors (Python's in brackets):
//   using a closed connection            mp::ValueError "handle is closed"        [OSError]
//   send on a read-only end              mp::ValueError "connection is read-only" [OSError]
//   recv on a write-only end             mp::ValueError "connection is write-only"[OSError]
//   recv when the other end is closed    mp::EOFError                             [EOFError]
//   send when the other end is closed    std::system_error EPIPE                  [BrokenPipeError]
//   message longer than maxlength        std::system_error EMSGSIZE "bad message length" [OSError]
//   message received as another type     mp::SerializationError naming both types
// Sending to a closed pipe never kills the process with SIGPIPE (see posix/socket.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <sched.h>

#include "detail/fd_table.hpp"
#include "detail/hmac.hpp"
#include "detail/posix/net.hpp"
#include "detail/posix/socket.hpp"
#include "detail/posix/syscall.hpp"
#include "detail/timeout.hpp"
#include "errors.hpp"
#include "serialization.hpp"

namespace multiprocessing {

class Connection;
inline std::pair<Connection, Connection> Pipe(bool duplex = true);

namespace detail {

// Frame layout and tuning (see the top of this file).
inline constexpr std::size_t frame_length_size = sizeof(std::uint64_t);
inline constexpr std::size_t frame_head = 64;
inline constexpr std::size_t frame_payload_in_head = frame_head - frame_length_size;
// Messages up to this size are allocated at once; longer ones grow as their bytes arrive.
inline constexpr std::size_t eager_allocation = std::size_t(1) << 20;
// A length no real message can have (it would not fit in memory).
inline constexpr std::uint64_t max_message_length = std::uint64_t(1) << 48;
// The adaptive spin: at most spin_limit per receive; a receive that had to sleep for less than
// short_sleep counts as one a spin might have caught.
inline constexpr std::int64_t spin_limit_ns = 50'000;
inline constexpr std::int64_t spin_without_yield_ns = 5'000;
inline constexpr std::int64_t short_sleep_ns = 200'000;
inline constexpr std::int64_t longest_sample_ns = 1'000'000;

// Byte-sized, trivially copyable element types: what recv_bytes may return.
template <class B>
concept byte_container =
    std::ranges::contiguous_range<B> && std::default_initializable<B> &&
    sizeof(std::ranges::range_value_t<B>) == 1 &&
    std::is_trivially_copyable_v<std::ranges::range_value_t<B>> &&
    requires(B& b, std::size_t n) { b.resize(n); };

// Any contiguous range of trivially copyable elements, seen as bytes (Python's memoryview).
template <class R>
concept byte_view_source = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                           std::is_trivially_copyable_v<std::ranges::range_value_t<R>>;

// Everything one connection needs, shared by the copies of its handle in one process.
struct connection_state {
    posix::unique_fd rfd, wfd;
    bool readable = false, writable = false;
    std::vector<std::byte> send_buffer, recv_buffer;  // reused across messages
    // The adaptive spin.
    std::int64_t average_wait_ns = 0;
    std::uint32_t receives = 0;
    bool several_cpus = true;
    bool yield_at_once = false;

    bool closed() const noexcept { return !rfd && !wfd; }
};

// Lets the buffer of one huge message go instead of keeping it for the next.
struct trim_after_use {
    std::vector<std::byte>& buf;
    ~trim_after_use() {
        if (buf.capacity() > eager_allocation) std::vector<std::byte>().swap(buf);
    }
};

}  // namespace detail

// Python: multiprocessing.connection.Connection
class Connection {
public:
    // A closed connection (Python has none; useful as a placeholder).
    Connection() noexcept = default;

    // Python: Connection(handle, readable, writable): adopts descriptors of a connection made
    // by Pipe() (-1 for a direction it lacks), e.g. in a child that received them.
    Connection(int read_fd, int write_fd) : s_(std::make_shared<detail::connection_state>()) {
        s_->rfd.reset(read_fd);
        s_->wfd.reset(write_fd);
        s_->readable = read_fd >= 0;
        s_->writable = write_fd >= 0;
        if (!s_->readable && !s_->writable)
            throw ValueError("at least one of readable and writable must be true");
        detail::posix::install_sigpipe_guard();
    }

    // Python: Connection.send(obj): sends a serializable object; the receiver must call
    // recv<T>() with the same T.
    template <class T>
    void send(const T& obj) {
        auto& s = check_writable();
        auto& buf = s.send_buffer;
        detail::trim_after_use guard{buf};
        buf.assign(detail::frame_length_size, std::byte{});
        detail::pack_message_into(buf, obj);
        std::uint64_t len = buf.size() - detail::frame_length_size;
        std::memcpy(buf.data(), &len, sizeof len);
        if (buf.size() < detail::frame_head) buf.resize(detail::frame_head);
        iovec v{buf.data(), buf.size()};
        write_frame(s, &v, 1);
    }

    // Python: Connection.recv(): the next message, which must have been sent as a T (otherwise
    // mp::SerializationError names both types). Throws mp::EOFError when the other end is closed
    // and nothing is left.
    template <class T>
    T recv() {
        auto& s = check_readable();
        auto& buf = s.recv_buffer;
        detail::trim_after_use guard{buf};
        std::byte head[detail::frame_head];
        std::uint64_t len = read_head(s, head);
        read_rest(s, buf, len, head);
        return detail::unpack_message<T>(std::span<const std::byte>(buf.data(), len));
    }

    // Python: Connection.send_bytes(buf, offset=0, size=None): sends bytes of any contiguous
    // range of trivially copyable elements; offset and size count bytes, as in Python.
    template <detail::byte_view_source R>
        requires(!std::convertible_to<const R&, std::string_view>)
    void send_bytes(const R& buf, std::ptrdiff_t offset = 0,
                    std::optional<std::ptrdiff_t> size = std::nullopt) {
        auto bytes = std::as_bytes(std::span(std::ranges::data(buf), std::ranges::size(buf)));
        send_bytes_impl(bytes, offset, size);
    }
    // Strings and string literals (without their terminating NUL).
    void send_bytes(std::string_view buf, std::ptrdiff_t offset = 0,
                    std::optional<std::ptrdiff_t> size = std::nullopt) {
        send_bytes_impl(std::as_bytes(std::span(buf.data(), buf.size())), offset, size);
    }

    // Python: Connection.recv_bytes(maxlength=None): the next message as bytes, by default a
    // std::vector<std::byte>; recv_bytes<std::string>() and other byte containers work too.
    // A message longer than maxlength throws std::system_error (EMSGSIZE, "bad message length")
    // and, as in Python, leaves the connection unreadable (a one-way end is closed).
    template <detail::byte_container Bytes = std::vector<std::byte>>
    Bytes recv_bytes(std::optional<std::ptrdiff_t> maxlength = std::nullopt) {
        auto& s = check_readable();
        if (maxlength && *maxlength < 0) throw ValueError("negative maxlength");
        std::byte head[detail::frame_head];
        std::uint64_t len = read_head(s, head);
        if (maxlength && len > std::uint64_t(*maxlength)) bad_message_length(s);
        Bytes out;
        read_rest(s, out, len, head);
        return out;
    }

    // Python: Connection.recv_bytes_into(buffer, offset=0): reads the next message into
    // `buffer` (any contiguous range of trivially copyable elements) from byte `offset` on and
    // returns its size in bytes. When it does not fit, throws mp::BufferTooShort carrying the
    // whole message in data(); the message is consumed either way.
    template <class R>
        requires std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                 std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
                 (!std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>)
    std::size_t recv_bytes_into(R&& buffer, std::ptrdiff_t offset = 0) {
        auto& s = check_readable();
        auto bytes = std::as_writable_bytes(
            std::span(std::ranges::data(buffer), std::ranges::size(buffer)));
        if (offset < 0) throw ValueError("negative offset");
        if (std::size_t(offset) > bytes.size()) throw ValueError("offset too large");
        std::byte head[detail::frame_head];
        std::uint64_t len = read_head(s, head);
        if (len > bytes.size() - std::size_t(offset)) {
            std::string whole;
            read_rest(s, whole, len, head);
            throw BufferTooShort("buffer too short: the message has " + std::to_string(len) +
                                     " bytes, the buffer " + std::to_string(bytes.size()) +
                                     " bytes from offset " + std::to_string(offset),
                                 std::move(whole));
        }
        auto dest = bytes.subspan(std::size_t(offset), std::size_t(len));
        std::size_t in_head = std::min<std::size_t>(len, detail::frame_payload_in_head);
        if (in_head) std::memcpy(dest.data(), head + detail::frame_length_size, in_head);
        read_exactly(s, dest.data() + in_head, len - in_head);
        return std::size_t(len);
    }

    // Python: Connection.poll(timeout=0.0): whether there is anything to read now (or the other
    // end is closed, in which case recv throws EOFError).
    bool poll() { return poll_until(multiprocessing::detail::deadline::poll_once()); }
    // Python: Connection.poll(timeout): waits up to `timeout` (a duration or seconds);
    // poll(std::nullopt) waits forever, as Python's poll(None).
    template <detail::timeout_like Timeout>
    bool poll(Timeout timeout) {
        return poll_until(detail::deadline_after(timeout));
    }

    // Python: Connection.close(): closes the connection for every copy of this handle in this
    // process; a second close does nothing.
    void close() noexcept {
        if (!s_) return;
        s_->rfd.reset();
        s_->wfd.reset();
        s_->readable = s_->writable = false;
    }
    // Python: Connection.closed
    bool closed() const noexcept { return !s_ || s_->closed(); }
    // Python: Connection.readable / Connection.writable
    bool readable() const noexcept { return s_ && s_->readable; }
    bool writable() const noexcept { return s_ && s_->writable; }
    // Python: Connection.fileno(): the descriptor that becomes readable when a message arrives
    // (the writing descriptor of a write-only end). Throws mp::ValueError when closed.
    int fileno() const {
        const auto& s = check_open();
        return s.rfd ? s.rfd.get() : s.wfd.get();
    }

    // Whether two handles refer to the same connection (Python's `is`).
    friend bool operator==(const Connection& a, const Connection& b) noexcept {
        return a.s_ == b.s_;
    }

    // Under spawn and forkserver: travels to a child as an argument, as its descriptors (the
    // child gets duplicates of its own); a closed end travels as closed. Sent in a message it
    // throws SerializationError, as Python's Connection is shared at process start only.
    template <class Archive>
    void serialize(Archive& ar) {
        if (!detail::fd_table::current()) detail::no_fd_table("Connection");
        enum : std::uint8_t { can_read = 1, can_write = 2, has_rfd = 4, has_wfd = 8 };
        std::uint8_t flags = 0;
        std::uint32_t r = 0, w = 0;
        if constexpr (Archive::is_loading) {
            ar(flags);
            if (flags & has_rfd) ar(r);
            if (flags & has_wfd) ar(w);
            if (!(flags & (has_rfd | has_wfd))) {
                s_.reset();
                return;
            }
            auto s = std::make_shared<detail::connection_state>();
            if (flags & has_rfd) s->rfd = detail::import_fd(r, "Connection");
            if (flags & has_wfd) s->wfd = detail::import_fd(w, "Connection");
            s->readable = (flags & can_read) && s->rfd;
            s->writable = (flags & can_write) && s->wfd;
            detail::posix::install_sigpipe_guard();
            s_ = std::move(s);
        } else {
            if (!closed()) {
                if (s_->readable) flags |= can_read;
                if (s_->writable) flags |= can_write;
                if (s_->rfd) flags |= has_rfd;
                if (s_->wfd) flags |= has_wfd;
            }
            ar(flags);
            if (flags & has_rfd) {
                r = detail::export_fd(s_->rfd.get(), "Connection");
                ar(r);
            }
            if (flags & has_wfd) {
                w = detail::export_fd(s_->wfd.get(), "Connection");
                ar(w);
            }
        }
    }

private:
    friend std::pair<Connection, Connection> Pipe(bool duplex);

    detail::connection_state& check_open() const {
        if (closed()) throw ValueError("handle is closed");
        return *s_;
    }
    detail::connection_state& check_readable() const {
        auto& s = check_open();
        if (!s.readable) throw ValueError("connection is write-only");
        return s;
    }
    detail::connection_state& check_writable() const {
        auto& s = check_open();
        if (!s.writable) throw ValueError("connection is read-only");
        return s;
    }

    void send_bytes_impl(std::span<const std::byte> m, std::ptrdiff_t offset,
                         std::optional<std::ptrdiff_t> size) {
        auto& s = check_writable();
        std::size_t n = m.size();
        if (offset < 0) throw ValueError("offset is negative");
        if (n < std::size_t(offset)) throw ValueError("buffer length < offset");
        std::size_t count = n - std::size_t(offset);
        if (size) {
            if (*size < 0) throw ValueError("size is negative");
            if (std::size_t(*size) > count) throw ValueError("buffer length < offset + size");
            count = std::size_t(*size);
        }
        auto payload = m.subspan(std::size_t(offset), count);
        std::uint64_t len = count;
        if (count <= detail::frame_payload_in_head) {
            std::byte frame[detail::frame_head]{};
            std::memcpy(frame, &len, sizeof len);
            if (count) std::memcpy(frame + detail::frame_length_size, payload.data(), count);
            iovec v{frame, sizeof frame};
            write_frame(s, &v, 1);
        } else {
            iovec v[2] = {{&len, sizeof len},
                          {const_cast<std::byte*>(payload.data()), payload.size()}};
            write_frame(s, v, 2);
        }
    }

    static void write_frame(detail::connection_state& s, iovec* v, int n) {
        int err = detail::posix::write_all(s.wfd.get(), v, n);
        if (err == EPIPE)
            throw std::system_error(err, std::generic_category(),
                                    "send: the other end of the connection is closed");
        if (err) detail::posix::throw_errno("send", err);
    }

    // Reads the first frame_head bytes of the next message into `head` and returns its length.
    static std::uint64_t read_head(detail::connection_state& s, std::byte* head) {
        namespace posix = detail::posix;
        int fd = s.rfd.get();
        std::size_t got = 0;
        if ((s.receives++ & 255) == 0) s.several_cpus = posix::several_cpus_allowed();
        if (s.several_cpus) {
            got = spin_then_read(s, head);
        } else {
            got = posix::read_full(fd, head, detail::frame_head);
        }
        if (got < detail::frame_head) {
            if (got == 0) throw EOFError("end of file: the other end of the connection is closed");
            throw EOFError("got end of file during message");
        }
        std::uint64_t len;
        std::memcpy(&len, head, sizeof len);
        if (len > detail::max_message_length) bad_message_length(s);
        return len;
    }

    // The adaptive spin: try to read without blocking while the budget lasts, then block;
    // learn from how long the message took.
    static std::size_t spin_then_read(detail::connection_state& s, std::byte* head) {
        namespace posix = detail::posix;
        static std::atomic<bool> nowait_supported{true};
        int fd = s.rfd.get();
        std::size_t got = 0;
        bool eof = false;
        const std::int64_t start = posix::monotonic_ns();
        std::int64_t waited = 0;
        bool caught = false;
        const std::int64_t budget =
            s.average_wait_ns < detail::spin_limit_ns ? detail::spin_limit_ns : 0;
        // Yield at once when messages came only after we yielded: the peer probably shares our
        // CPU. Every 16th receive probes whether it still does.
        const bool yield_at_once = s.yield_at_once && (s.receives & 15) != 0;
        for (bool first = true;; first = false) {
            if (nowait_supported.load(std::memory_order_relaxed)) {
                auto r = posix::try_read(fd, head, detail::frame_head, got);
                if (r == posix::try_read_status::data || r == posix::try_read_status::eof) {
                    eof = r == posix::try_read_status::eof;
                    caught = true;
                } else if (r == posix::try_read_status::unsupported) {
                    nowait_supported.store(false, std::memory_order_relaxed);
                    continue;
                }
            } else if (posix::readable_now(fd)) {
                caught = true;
            }
            waited = first ? 0 : posix::monotonic_ns() - start;
            if (caught || waited >= budget) break;
            if (yield_at_once || waited >= detail::spin_without_yield_ns) ::sched_yield();
        }
        if (caught && !yield_at_once) s.yield_at_once = waited >= detail::spin_without_yield_ns;
        if (!eof) got += posix::read_full(fd, head + got, detail::frame_head - got);
        std::int64_t sample;
        if (caught) {
            sample = waited;
        } else {
            waited = std::min(posix::monotonic_ns() - start, detail::longest_sample_ns);
            // Spun in vain: count the whole wait. Did not spin but slept only briefly: a spin
            // might have caught it (the sleep includes the wake-up), so try spinning again.
            sample = budget > 0 || waited >= detail::short_sleep_ns ? waited
                                                                    : detail::spin_limit_ns / 2;
        }
        s.average_wait_ns += (sample - s.average_wait_ns) / 4;
        return got;
    }

    // Reads the rest of a message of `len` bytes whose head is in `head` into `out`.
    template <class Bytes>
    static void read_rest(detail::connection_state& s, Bytes& out, std::uint64_t len,
                          const std::byte* head) {
        std::size_t n = std::size_t(len);
        std::size_t in_head = std::min(n, detail::frame_payload_in_head);
        out.resize(std::min(n, std::max(in_head, detail::eager_allocation)));
        if (in_head) std::memcpy(std::ranges::data(out), head + detail::frame_length_size, in_head);
        std::size_t pos = in_head;
        while (pos < n) {
            if (pos == out.size()) out.resize(std::min(n, out.size() * 2));
            auto* p = reinterpret_cast<std::byte*>(std::ranges::data(out));
            read_exactly(s, p + pos, out.size() - pos);
            pos = out.size();
        }
    }

    static void read_exactly(detail::connection_state& s, std::byte* p, std::size_t n) {
        if (n && detail::posix::read_full(s.rfd.get(), p, n) < n)
            throw EOFError("got end of file during message");
    }

    // Python: Connection._bad_message_length(): the rest of the message is still unread, so the
    // connection cannot be read any more.
    [[noreturn]] static void bad_message_length(detail::connection_state& s) {
        if (s.writable) {
            s.readable = false;
        } else {
            s.rfd.reset();
            s.readable = false;
        }
        throw std::system_error(EMSGSIZE, std::generic_category(), "bad message length");
    }

    bool poll_until(::multiprocessing::detail::deadline deadline) {
        auto& s = check_readable();
        return detail::posix::wait_readable(s.rfd.get(), deadline);
    }

    std::shared_ptr<detail::connection_state> s_;
};

// Python: multiprocessing.Pipe(duplex=True). Duplex: two connected ends that both send and
// receive. One-way (duplex = false): the first end only receives, the second only sends.
inline std::pair<Connection, Connection> Pipe(bool duplex) {
    namespace posix = detail::posix;
    posix::install_sigpipe_guard();
    posix::unique_fd r1, w1;
    posix::make_pipe(r1, w1);
    Connection a, b;
    a.s_ = std::make_shared<detail::connection_state>();
    b.s_ = std::make_shared<detail::connection_state>();
    if (duplex) {
        posix::unique_fd r2, w2;
        posix::make_pipe(r2, w2);
        a.s_->rfd = std::move(r1);  // a reads what b writes ...
        b.s_->wfd = std::move(w1);
        b.s_->rfd = std::move(r2);  // ... and b what a writes
        a.s_->wfd = std::move(w2);
        a.s_->readable = a.s_->writable = b.s_->readable = b.s_->writable = true;
    } else {
        a.s_->rfd = std::move(r1);
        a.s_->readable = true;
        b.s_->wfd = std::move(w1);
        b.s_->writable = true;
    }
    return {std::move(a), std::move(b)};
}

// Python: multiprocessing.connection, the module.
namespace connection {

using multiprocessing::Connection;
using multiprocessing::Pipe;

// What wait() accepts besides Connections of one kind: a Connection or a raw descriptor (a
// Process's sentinel()), e.g. std::vector<mp::connection::waitable>{a, b, p.sentinel()}.
using waitable = std::variant<Connection, int>;

namespace detail {

inline int wait_handle(int fd) { return fd; }
inline int wait_handle(const Connection& c) { return c.fileno(); }
// A Process, or anything else with a sentinel descriptor.
template <class T>
    requires requires(const T& t) {
        { t.sentinel() } -> std::convertible_to<int>;
    }
int wait_handle(const T& t) {
    return t.sentinel();
}
template <class T>
int wait_handle(T* p);
template <class T>
int wait_handle(std::reference_wrapper<T> r);
template <class... Ts>
int wait_handle(const std::variant<Ts...>& v);

template <class T>
int wait_handle(T* p) {
    return wait_handle(*p);
}
template <class T>
int wait_handle(std::reference_wrapper<T> r) {
    return wait_handle(r.get());
}
template <class... Ts>
int wait_handle(const std::variant<Ts...>& v) {
    return std::visit([](const auto& x) { return wait_handle(x); }, v);
}

template <class E>
concept waitable_object = std::copy_constructible<E> && requires(const E& e) {
    { detail::wait_handle(e) } -> std::same_as<int>;
};

template <class R>
auto wait_until(const R& objects, ::multiprocessing::detail::deadline deadline) {
    std::vector<pollfd> fds;
    for (const auto& o : objects) fds.push_back(pollfd{wait_handle(o), POLLIN, 0});
    std::vector<std::ranges::range_value_t<R>> ready;
    if (multiprocessing::detail::posix::poll_until(fds, deadline) == 0) return ready;
    std::size_t i = 0;
    for (const auto& o : objects)
        if (fds[i++].revents) ready.push_back(o);
    return ready;
}

}  // namespace detail

// Python: multiprocessing.connection.wait(object_list, timeout=None): waits until at least one
// of `objects` is ready and returns those that are (in their order), or an empty vector on
// timeout. Elements: Connection (ready when there is something to read or the other end is
// closed), int descriptors (a Process's sentinel(), ready when it ends), pointers or
// reference_wrappers to either or to a Process, and std::variants of those (`waitable`).
template <std::ranges::forward_range R>
    requires detail::waitable_object<std::ranges::range_value_t<R>>
std::vector<std::ranges::range_value_t<R>> wait(const R& objects) {
    return detail::wait_until(objects, multiprocessing::detail::forever);
}
template <std::ranges::forward_range R, multiprocessing::detail::timeout_like Timeout>
    requires detail::waitable_object<std::ranges::range_value_t<R>>
std::vector<std::ranges::range_value_t<R>> wait(const R& objects, Timeout timeout) {
    return detail::wait_until(objects, multiprocessing::detail::deadline_after(timeout));
}
// wait({a, b}) and wait({a, b}, 1s).
template <detail::waitable_object E>
std::vector<E> wait(std::initializer_list<E> objects) {
    return detail::wait_until(objects, multiprocessing::detail::forever);
}
template <detail::waitable_object E, multiprocessing::detail::timeout_like Timeout>
std::vector<E> wait(std::initializer_list<E> objects, Timeout timeout) {
    return detail::wait_until(objects, multiprocessing::detail::deadline_after(timeout));
}


// ---- Listener and Client ------------------------------------------------------------------------
//
//     mp::connection::Listener listener({"127.0.0.1", 0}, std::nullopt, 1, "secret");
//     auto conn = listener.accept();                      // in the server
//     auto conn = mp::connection::Client(address, std::nullopt, "secret");   // in a client
//
// Sockets carry the same frames as Pipe(). With an authkey both sides run Python's challenge-
// response handshake (deliver_challenge/answer_challenge, HMAC-SHA256 with the "{sha256}" prefix
// of Python 3.12, digests compared in constant time), so only a peer that knows the key gets a
// Connection. Unlike Python, the listener bounds the handshake in time (handshake_timeout) and
// size (256 bytes per message, as Python), so a client that says nothing or sends garbage costs
// one failed accept() and the next client is served. Every handshake failure throws
// mp::AuthenticationError, on both sides when the key is wrong.

// Python: an address of multiprocessing.connection: a str naming a Unix socket (a filesystem
// path, or "\0name" in Linux's abstract namespace: no file, gone with the socket) or a
// (host, port) tuple for TCP over IPv4: Address("/tmp/sock"), Address{"127.0.0.1", 6000}.
class Address {
public:
    // No address (Python's None): a Listener or a manager picks one.
    Address() = default;
    Address(const char* path) : path_(path) {}
    Address(std::string path) : path_(std::move(path)) {}
    Address(std::string host, int port) : inet_(true), path_(std::move(host)), port_(port) {}

    // Python: connection.address_type(address): "AF_INET" for (host, port), else "AF_UNIX".
    std::string family() const { return inet_ ? "AF_INET" : "AF_UNIX"; }
    bool empty() const noexcept { return !inet_ && path_.empty(); }
    // The path of an AF_UNIX address, the host of an AF_INET one.
    const std::string& path() const noexcept { return path_; }
    const std::string& host() const noexcept { return path_; }
    int port() const noexcept { return port_; }

    // Python: repr(address): ('127.0.0.1', 6000) or '/tmp/sock' ('\x00name' when abstract).
    std::string to_string() const {
        std::string quoted = "'";
        for (char c : path_) {
            if (c == '\0') quoted += "\\x00";
            else if (c == '\'' || c == '\\') quoted += std::string("\\") + c;
            else quoted += c;
        }
        quoted += '\'';
        return inet_ ? "(" + quoted + ", " + std::to_string(port_) + ")" : quoted;
    }

    friend bool operator==(const Address&, const Address&) = default;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(inet_, path_, port_);
    }

private:
    bool inet_ = false;
    std::string path_;
    int port_ = 0;
};

// Python: the keyword arguments of Listener(address=None, family=None, backlog=1, authkey=None),
// and, beyond Python, how long a client may take over the handshake (nullopt: forever).
struct ListenerOptions {
    Address address = {};
    std::optional<std::string> family = std::nullopt;
    int backlog = 1;
    std::optional<std::string> authkey = std::nullopt;
    std::optional<std::chrono::nanoseconds> handshake_timeout = std::chrono::seconds(10);
};

// Python: the keyword arguments of Client(address, family=None, authkey=None); the handshake
// waits forever by default, as in Python, since a server may call accept() late.
struct ClientOptions {
    Address address = {};
    std::optional<std::string> family = std::nullopt;
    std::optional<std::string> authkey = std::nullopt;
    std::optional<std::chrono::nanoseconds> handshake_timeout = std::nullopt;
};

namespace detail {

namespace posix = multiprocessing::detail::posix;

// Python: connection.MESSAGE_LENGTH, _MD5ONLY_MESSAGE_LENGTH and the recv_bytes(256) limit.
inline constexpr std::size_t challenge_length = 40;
inline constexpr std::size_t min_challenge_length = 20;
inline constexpr std::size_t max_handshake_message = 256;
inline constexpr std::string_view challenge_tag = "#CHALLENGE#";
inline constexpr std::string_view welcome_message = "#WELCOME#";
inline constexpr std::string_view failure_message = "#FAILURE#";
inline constexpr std::string_view digest_tag = "{sha256}";

// Python: connection.arbitrary_address(family). AF_UNIX: a fresh name in the abstract
// namespace, so nothing is left in the filesystem when a process is killed.
inline Address arbitrary_address(const std::string& family) {
    if (family == "AF_INET") return Address("127.0.0.1", 0);
    unsigned char raw[8];
    posix::random_bytes(raw, sizeof raw);
    std::string name = std::string(1, '\0') + "mp-" + std::to_string(::getpid()) + "-";
    for (unsigned char b : raw) {
        name += "0123456789abcdef"[b >> 4];
        name += "0123456789abcdef"[b & 15];
    }
    return Address(std::move(name));
}

// Python: family = family or address_type(address); address = address or arbitrary_address.
inline Address resolve_address(Address address, const std::optional<std::string>& family) {
    if (family && *family != "AF_UNIX" && *family != "AF_INET")
        throw ValueError("unrecognized family: " + *family);
    if (address.empty()) return arbitrary_address(family.value_or("AF_UNIX"));
    if (family && *family != address.family())
        throw ValueError("address " + address.to_string() + " is not of family " + *family);
    return address;
}

inline posix::socket_address to_socket_address(const Address& a) {
    return a.family() == "AF_INET" ? posix::inet_address(a.host(), a.port())
                                   : posix::unix_address(a.path());
}

inline Address to_address(const posix::socket_address& a) {
    auto p = posix::parts_of(a);
    return p.unix_family ? Address(std::move(p.host_or_path))
                         : Address(std::move(p.host_or_path), p.port);
}

// A Connection over one connected socket (the same descriptor read and written, through a
// duplicate, as Connection owns one descriptor per direction).
inline Connection adopt_socket(posix::unique_fd fd) {
    int w = posix::check(MP_SYSCALL(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)), "fcntl(F_DUPFD)");
    int r = fd.release();
    try {
        return Connection(r, w);
    } catch (...) {
        ::close(r);
        ::close(w);
        throw;
    }
}

inline std::string_view as_chars(std::span<const std::byte> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// One handshake message of at most 256 bytes, before the deadline; reads exactly one frame, so
// the connection carries on with the next.
inline std::string recv_handshake(Connection& c, ::multiprocessing::detail::deadline deadline) {
    using multiprocessing::detail::frame_head;
    using multiprocessing::detail::frame_length_size;
    using multiprocessing::detail::frame_payload_in_head;
    auto fail = [](posix::read_status st) {
        throw AuthenticationError(st == posix::read_status::timeout
                                      ? "handshake timed out"
                                      : "connection closed during the handshake");
    };
    std::byte head[frame_head];
    std::size_t got = 0;
    auto st = posix::read_until(c.fileno(), head, frame_head, deadline, got);
    if (st != posix::read_status::done) fail(st);
    std::uint64_t len;
    std::memcpy(&len, head, sizeof len);
    if (len > max_handshake_message)
        throw AuthenticationError("handshake message too long: " + std::to_string(len) +
                                  " bytes (at most " + std::to_string(max_handshake_message) + ")");
    std::string message(std::size_t(len), '\0');
    std::size_t in_head = std::min<std::size_t>(len, frame_payload_in_head);
    std::memcpy(message.data(), head + frame_length_size, in_head);
    if (len > in_head) {
        st = posix::read_until(c.fileno(), message.data() + in_head, len - in_head, deadline, got);
        if (st != posix::read_status::done) fail(st);
    }
    return message;
}

// Python: connection._create_response(authkey, message): "{sha256}" + HMAC of the whole
// challenge (its own "{sha256}" prefix included).
inline std::string challenge_response(std::string_view authkey, std::string_view message) {
    auto d = multiprocessing::detail::hmac_sha256(std::as_bytes(std::span(authkey)),
                                                  std::as_bytes(std::span(message)));
    return std::string(digest_tag) + std::string(as_chars(d));
}

// Python: connection.deliver_challenge(connection, authkey)
inline void deliver_challenge(Connection& c, std::string_view authkey, ::multiprocessing::detail::deadline deadline) {
    std::string message(digest_tag);
    message.resize(digest_tag.size() + challenge_length);
    posix::random_bytes(message.data() + digest_tag.size(), challenge_length);
    c.send_bytes(std::string(challenge_tag) + message);
    std::string response = recv_handshake(c, deadline);
    std::string expected = challenge_response(authkey, message);
    if (!multiprocessing::detail::compare_digest(std::as_bytes(std::span(response)),
                                                 std::as_bytes(std::span(expected)))) {
        try {
            c.send_bytes(failure_message);
        } catch (const std::exception&) {
            // The peer may be gone already; the verdict stands either way.
        }
        throw AuthenticationError("digest received was wrong");
    }
    c.send_bytes(welcome_message);
}

// Python: connection.answer_challenge(connection, authkey)
inline void answer_challenge(Connection& c, std::string_view authkey, ::multiprocessing::detail::deadline deadline) {
    std::string message = recv_handshake(c, deadline);
    if (!message.starts_with(challenge_tag))
        throw AuthenticationError("protocol error: expected a challenge");
    message.erase(0, challenge_tag.size());
    if (message.size() < min_challenge_length)
        throw AuthenticationError("challenge too short: " + std::to_string(message.size()) +
                                  " bytes");
    if (!message.starts_with(digest_tag))
        throw AuthenticationError("unsupported digest in the challenge (only {sha256})");
    c.send_bytes(challenge_response(authkey, message));
    if (recv_handshake(c, deadline) != welcome_message)
        throw AuthenticationError("digest sent was rejected");
}

// Runs one side of the handshake; any failure (a wrong key, a timeout, a peer that hangs up or
// sends garbage) closes the connection and throws AuthenticationError.
template <class F>
void handshake(Connection& c, F&& steps) {
    try {
        steps();
    } catch (const AuthenticationError&) {
        c.close();
        throw;
    } catch (const std::system_error& e) {
        c.close();
        throw AuthenticationError(std::string("handshake failed: ") + e.what());
    }
}

// Python: Listener.accept()'s handshake: challenge the client, then answer its challenge.
inline void server_handshake(Connection& c, std::string_view authkey, ::multiprocessing::detail::deadline deadline) {
    handshake(c, [&] {
        deliver_challenge(c, authkey, deadline);
        answer_challenge(c, authkey, deadline);
    });
}

// Python: Client()'s handshake: answer the server's challenge, then challenge it.
inline void client_handshake(Connection& c, std::string_view authkey, ::multiprocessing::detail::deadline deadline) {
    handshake(c, [&] {
        answer_challenge(c, authkey, deadline);
        deliver_challenge(c, authkey, deadline);
    });
}

inline multiprocessing::detail::deadline deadline_for(
    const std::optional<std::chrono::nanoseconds>& timeout) {
    return timeout ? multiprocessing::detail::deadline_after(*timeout)
                   : multiprocessing::detail::forever;
}

struct listener_state {
    posix::unique_fd fd;
    Address address;
    std::optional<std::string> authkey;
    std::optional<std::chrono::nanoseconds> handshake_timeout;
    std::optional<Address> last_accepted;
    int creator_pid = 0;

    void close() noexcept {
        if (!fd) return;
        // shutdown() wakes a thread blocked in accept(); close() alone would not.
        ::shutdown(fd.get(), SHUT_RDWR);
        fd.reset();
        // Python's Listener unlinks its socket file; only the process that made it does.
        if (address.family() == "AF_UNIX" && !address.path().empty() &&
            address.path()[0] != '\0' && creator_pid == ::getpid())
            ::unlink(address.path().c_str());
    }
    ~listener_state() { close(); }
};

}  // namespace detail

// Python: multiprocessing.connection.Listener. A cheap copyable handle: copies refer to the same
// listening socket, which is closed by close() or when the last copy goes.
class Listener {
public:
    // Python: Listener(): a fresh AF_UNIX address (in the abstract namespace).
    Listener() : Listener(ListenerOptions{}) {}
    // Python: Listener(address, family=None, backlog=1, authkey=None)
    explicit Listener(Address address, std::optional<std::string> family = std::nullopt,
                      int backlog = 1, std::optional<std::string> authkey = std::nullopt)
        : Listener(ListenerOptions{.address = std::move(address),
                                   .family = std::move(family),
                                   .backlog = backlog,
                                   .authkey = std::move(authkey)}) {}
    explicit Listener(ListenerOptions options) : s_(std::make_shared<detail::listener_state>()) {
        multiprocessing::detail::posix::install_sigpipe_guard();
        Address address = detail::resolve_address(std::move(options.address), options.family);
        s_->fd = detail::posix::listen_on(detail::to_socket_address(address),
                                          std::max(options.backlog, 0));
        s_->creator_pid = ::getpid();
        // Python: self._address = self._socket.getsockname(), so port 0 becomes the real port.
        s_->address = address.family() == "AF_INET"
                          ? detail::to_address(detail::posix::local_address(s_->fd.get()))
                          : address;
        s_->authkey = std::move(options.authkey);
        s_->handshake_timeout = options.handshake_timeout;
    }

    // Python: Listener.accept(): waits for a client and returns its Connection. With an authkey,
    // a client that fails the handshake (wrong key, silence past handshake_timeout, garbage)
    // throws mp::AuthenticationError here; the listener stays usable for the next client.
    Connection accept() {
        auto& s = check_open();
        detail::posix::socket_address peer;
        Connection c = detail::adopt_socket(detail::posix::accept_on(s.fd.get(), peer));
        s.last_accepted = detail::to_address(peer);
        if (s.authkey)
            detail::server_handshake(c, *s.authkey, detail::deadline_for(s.handshake_timeout));
        return c;
    }

    // Python: Listener.close(): closes the socket for every copy (and unlinks its file).
    void close() noexcept {
        if (s_) s_->close();
    }
    bool closed() const noexcept { return !s_ || !s_->fd; }

    // Python: Listener.address (the real port when bound to port 0).
    const Address& address() const { return check_open().address; }
    // Python: Listener.last_accepted: the peer of the last accepted connection (nullopt: None).
    std::optional<Address> last_accepted() const { return check_open().last_accepted; }
    // The listening descriptor, readable when a client is waiting (for poll and wait).
    int fileno() const { return check_open().fd.get(); }

private:
    detail::listener_state& check_open() const {
        if (closed()) throw ValueError("listener is closed");
        return *s_;
    }

    std::shared_ptr<detail::listener_state> s_;
};

// Python: multiprocessing.connection.Client(address, family=None, authkey=None): connects to a
// Listener; with an authkey runs the handshake (AuthenticationError when the key is wrong).
// A refused connection throws std::system_error (ECONNREFUSED, or ENOENT for a missing path).
inline Connection Client(ClientOptions options) {
    if (options.address.empty()) throw ValueError("Client needs an address");
    Address address = detail::resolve_address(std::move(options.address), options.family);
    Connection c =
        detail::adopt_socket(detail::posix::connect_to(detail::to_socket_address(address)));
    if (options.authkey)
        detail::client_handshake(c, *options.authkey,
                                 detail::deadline_for(options.handshake_timeout));
    return c;
}
inline Connection Client(Address address, std::optional<std::string> family = std::nullopt,
                         std::optional<std::string> authkey = std::nullopt) {
    return Client(ClientOptions{.address = std::move(address),
                                .family = std::move(family),
                                .authkey = std::move(authkey)});
}

}  // namespace connection

}  // namespace multiprocessing
