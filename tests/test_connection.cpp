// Pipe, Connection and connection::wait, between real processes. Children's targets are
// captureless lambdas taking the ends as arguments, so every test runs under each start method
// (tests/CMakeLists.txt): under spawn and forkserver the ends travel as their descriptors.
#include <multiprocessing.hpp>
#include <multiprocessing/connection.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <system_error>
#include <thread>
#include <variant>
#include <vector>

#include <unistd.h>

namespace mp = multiprocessing;
using namespace std::chrono_literals;

namespace {

// Checks that `expr` throws Type whose what() contains each of the strings that follow.
// (A macro, not a lambda: clang 14 cannot capture structured bindings.)
#define CHECK_THROWS_CONTAINING(Type, expr, ...)                     \
    do {                                                            \
        try {                                                       \
            expr;                                                   \
            FAIL_CHECK("no exception from " #expr);                 \
        } catch (const Type& e) {                                   \
            check_what(e.what(), {__VA_ARGS__});                    \
        }                                                           \
    } while (0)

void check_what(const std::string& what, std::initializer_list<std::string> parts) {
    for (const auto& p : parts) {
        INFO("what(): " << what);
        CHECK(what.find(p) != std::string::npos);
    }
}

std::string as_string(const std::vector<std::byte>& v) {
    return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

TEST_CASE("a duplex Pipe carries messages both ways between processes") {
    auto [a, b] = mp::Pipe();
    CHECK(a.readable());
    CHECK(a.writable());
    CHECK(b.readable());
    CHECK(b.writable());
    mp::Process p(
        [](mp::Connection c) {
            for (;;) {
                auto msg = c.recv<std::variant<int, std::string>>();
                if (std::holds_alternative<std::string>(msg)) break;
                c.send(std::get<int>(msg) * 2);
            }
            c.send(std::string("bye"));
            c.send(std::vector<double>{1.5, 2.5});
        },
        b);
    p.start();
    for (int x : {1, 21, 50}) {
        a.send(std::variant<int, std::string>(x));
        CHECK(a.recv<int>() == 2 * x);
    }
    a.send(std::variant<int, std::string>(std::string("stop")));
    CHECK(a.recv<std::string>() == "bye");
    CHECK(a.recv<std::vector<double>>() == std::vector<double>{1.5, 2.5});
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("Pipe(false): the first end receives, the second sends, in order") {
    auto [reader, writer] = mp::Pipe(false);
    CHECK(reader.readable());
    CHECK_FALSE(reader.writable());
    CHECK(writer.writable());
    CHECK_FALSE(writer.readable());
    CHECK_THROWS_CONTAINING(mp::ValueError, reader.send(1), "connection is read-only");
    CHECK_THROWS_CONTAINING(mp::ValueError, writer.recv<int>(), "connection is write-only");
    CHECK_THROWS_CONTAINING(mp::ValueError, writer.poll(), "write-only");

    mp::Process p(
        [](mp::Connection w) {
            for (int i = 0; i < 100; ++i) w.send(i);
            w.close();
        },
        writer);
    p.start();
    writer.close();
    for (int i = 0; i < 100; ++i) REQUIRE(reader.recv<int>() == i);
    CHECK(reader.poll(10s));  // the writer is closed everywhere: end of file is readable
    CHECK_THROWS_AS(reader.recv<int>(), mp::EOFError);
    p.join();
}

TEST_CASE("receiving a message as another type names both types") {
    auto [a, b] = mp::Pipe();
    a.send(std::string("text"));
    CHECK_THROWS_CONTAINING(mp::SerializationError, b.recv<int>(), "std::string", "int");
    // The message was consumed; the connection still works.
    a.send(std::vector<int>{1, 2});
    CHECK(b.recv<std::vector<int>>() == std::vector<int>{1, 2});
    // Bytes that are not a message at all.
    a.send_bytes(std::string("garbage"));
    CHECK_THROWS_AS(b.recv<int>(), mp::SerializationError);
    a.send(7);
    CHECK(b.recv<int>() == 7);
}

TEST_CASE("EOFError once the other end is closed and everything was read") {
    auto [a, b] = mp::Pipe();
    b.send(1);
    b.send(2);
    b.close();
    CHECK(a.recv<int>() == 1);
    CHECK(a.recv<int>() == 2);
    CHECK_THROWS_AS(a.recv<int>(), mp::EOFError);
    CHECK_THROWS_AS(a.recv_bytes(), mp::EOFError);
    CHECK(a.poll());  // end of file counts as readable, as in Python
}

TEST_CASE("EOFError when the process holding the other end is killed") {
    auto [a, b] = mp::Pipe();
    mp::Process p(
        [](mp::Connection c) {
            c.send(std::string("ready"));
            c.recv<int>();  // blocks until killed
        },
        b);
    p.start();
    b.close();
    CHECK(a.recv<std::string>() == "ready");
    p.kill();
    p.join();
    CHECK(p.exitcode() == -SIGKILL);
    CHECK_THROWS_AS(a.recv<int>(), mp::EOFError);
}

TEST_CASE("sending to a closed pipe throws EPIPE instead of killing with SIGPIPE") {
    SECTION("duplex") {
        auto [a, b] = mp::Pipe();
        b.close();
        try {
            a.send(1);
            FAIL("send did not throw");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::broken_pipe);
            CHECK(std::string(e.what()).find("other end of the connection is closed") !=
                  std::string::npos);
        }
        CHECK_THROWS_AS(a.send_bytes(std::string(100000, 'x')), std::system_error);
    }
    SECTION("one-way, in a child whose reader was killed") {
        auto [reader, writer] = mp::Pipe(false);
        mp::Process p([](mp::Connection r) { r.recv<int>(); }, reader);
        p.start();
        reader.close();
        p.kill();
        p.join();
        CHECK_THROWS_AS(writer.send(std::string("nobody listens")), std::system_error);
    }
    SECTION("any other SIGPIPE keeps its default action") {
        mp::Process p([] {
            auto [c, d] = mp::Pipe();  // installs the guard in this process
            d.close();
            try {
                c.send(1);
                return;  // exit code 0: the test fails
            } catch (const std::system_error&) {
            }
            int fds[2];
            if (::pipe(fds) != 0) return;
            ::close(fds[0]);
            char x = 'x';
            [[maybe_unused]] auto r = ::write(fds[1], &x, 1);  // raises SIGPIPE
        });
        p.start();
        p.join();
        CHECK(p.exitcode() == -SIGPIPE);
    }
}

TEST_CASE("send_bytes with offset and size, as Python's") {
    auto [a, b] = mp::Pipe();
    a.send_bytes("hello world");  // a string literal, without its NUL
    CHECK(as_string(b.recv_bytes()) == "hello world");
    a.send_bytes(std::string("hello world"), 6);
    CHECK(b.recv_bytes<std::string>() == "world");
    a.send_bytes(std::string_view("hello world"), 0, 5);
    CHECK(b.recv_bytes<std::string>() == "hello");
    std::vector<std::int32_t> ints{1, 2, 3, 4};
    a.send_bytes(ints, 4, 8);  // offset and size count bytes
    auto got = b.recv_bytes();
    REQUIRE(got.size() == 8);
    std::int32_t pair[2];
    std::memcpy(pair, got.data(), 8);
    CHECK(pair[0] == 2);
    CHECK(pair[1] == 3);
    a.send_bytes(std::string());
    CHECK(b.recv_bytes().empty());

    std::string s = "abc";
    CHECK_THROWS_CONTAINING(mp::ValueError, a.send_bytes(s, -1), "offset is negative");
    CHECK_THROWS_CONTAINING(mp::ValueError, a.send_bytes(s, 4), "buffer length < offset");
    CHECK_THROWS_CONTAINING(mp::ValueError, a.send_bytes(s, 0, -1), "size is negative");
    CHECK_THROWS_CONTAINING(mp::ValueError, a.send_bytes(s, 2, 2), "buffer length < offset + size");
    a.send_bytes(s, 3, 0);  // an empty message at the end is fine
    CHECK(b.recv_bytes().empty());
    CHECK_FALSE(b.poll());
}

TEST_CASE("messages of every size around the frame boundaries") {
    auto [a, b] = mp::Pipe();
    for (std::size_t n : {0, 1, 55, 56, 57, 63, 64, 65, 4095, 4096, 4097, 20000, 60000}) {
        std::string msg(n, '\0');
        for (std::size_t i = 0; i < n; ++i) msg[i] = char('a' + i % 26);
        a.send_bytes(msg);
        REQUIRE(b.recv_bytes<std::string>() == msg);
        a.send(msg);
        REQUIRE(b.recv<std::string>() == msg);
    }
}

TEST_CASE("recv_bytes(maxlength) refuses a longer message, as Python's") {
    SECTION("duplex: the end stays writable but can no longer read") {
        auto [a, b] = mp::Pipe();
        a.send_bytes(std::string(100, 'x'));
        try {
            b.recv_bytes(10);
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::message_size);
            CHECK(std::string(e.what()).find("bad message length") != std::string::npos);
        }
        CHECK_FALSE(b.readable());
        CHECK(b.writable());
        b.send(1);
        CHECK(a.recv<int>() == 1);
        CHECK_THROWS_CONTAINING(mp::ValueError, b.recv_bytes(), "write-only");
    }
    SECTION("one-way: the reader is closed") {
        auto [r, w] = mp::Pipe(false);
        w.send_bytes(std::string(11, 'x'));
        w.send_bytes(std::string(10, 'y'));
        CHECK_THROWS_AS(r.recv_bytes(10), std::system_error);
        CHECK(r.closed());
    }
    SECTION("a message of exactly maxlength is fine") {
        auto [a, b] = mp::Pipe();
        a.send_bytes(std::string(10, 'x'));
        CHECK(b.recv_bytes(10).size() == 10);
        CHECK_THROWS_AS(b.recv_bytes(-1), mp::ValueError);
    }
}

TEST_CASE("recv_bytes_into fills a buffer or throws BufferTooShort with the whole message") {
    auto [a, b] = mp::Pipe();
    std::array<char, 16> buf{};
    a.send_bytes("hello");
    CHECK(b.recv_bytes_into(buf, 3) == 5);
    CHECK(std::string(buf.data() + 3, 5) == "hello");
    CHECK(buf[2] == '\0');
    CHECK(buf[8] == '\0');

    std::vector<std::byte> small(4);
    std::string long_message(1000, 'z');
    long_message[999] = '!';
    a.send_bytes(long_message);
    try {
        b.recv_bytes_into(small);
        FAIL("no exception");
    } catch (const mp::BufferTooShort& e) {
        CHECK(e.data() == long_message);
    }
    a.send_bytes("12345");
    CHECK_THROWS_AS(b.recv_bytes_into(buf, 12), mp::BufferTooShort);  // 4 bytes left
    a.send_bytes("1234");
    CHECK(b.recv_bytes_into(std::span<char>(buf), 12) == 4);
    CHECK(std::string(buf.data() + 12, 4) == "1234");

    CHECK_THROWS_CONTAINING(mp::ValueError, b.recv_bytes_into(buf, -1), "negative offset");
    CHECK_THROWS_CONTAINING(mp::ValueError, b.recv_bytes_into(buf, 17), "offset too large");
    std::vector<std::int64_t> longs(2);
    a.send_bytes(std::vector<std::int64_t>{7, 8});
    CHECK(b.recv_bytes_into(longs) == 16);
    CHECK(longs == std::vector<std::int64_t>{7, 8});
}

TEST_CASE("poll with and without a timeout") {
    auto [a, b] = mp::Pipe();
    CHECK_FALSE(a.poll());
    CHECK_FALSE(a.poll(0));
    CHECK_FALSE(a.poll(20ms));
    CHECK_FALSE(a.poll(0.01));
    mp::Process p([](mp::Connection c) { c.send(42); }, b);
    p.start();
    CHECK(a.poll(30s));
    CHECK(a.poll(std::nullopt));  // Python's poll(None): wait as long as it takes
    CHECK(a.recv<int>() == 42);
    CHECK_FALSE(a.poll());
    p.join();
}

TEST_CASE("connection::wait over connections and a process sentinel") {
    auto [r1, w1] = mp::Pipe(false);
    auto [r2, w2] = mp::Pipe(false);
    auto [r3, w3] = mp::Pipe(false);
    auto [ctl, ctl_child] = mp::Pipe();

    SECTION("connections only") {
        std::vector<mp::Connection> conns{r1, r2, r3};
        CHECK(mp::connection::wait(conns, 10ms).empty());
        CHECK(mp::connection::wait(conns, 0).empty());
        w2.send(2);
        auto ready = mp::connection::wait(conns, 10s);
        REQUIRE(ready.size() == 1);
        CHECK(ready[0] == r2);
        w3.send(3);
        w1.send(1);
        ready = mp::connection::wait(conns);
        REQUIRE(ready.size() == 3);
        CHECK(ready[0] == r1);
        CHECK(ready[2] == r3);
        // Pointers, and the braced form.
        std::vector<mp::Connection*> ptrs{&r1, &r3};
        CHECK(mp::connection::wait(ptrs, 0).size() == 2);
        CHECK(mp::connection::wait({r2, r3}, 0).size() == 2);
    }

    SECTION("a child's messages and its sentinel") {
        mp::Process p(
            [](mp::Connection w, mp::Connection c) {
                c.recv<int>();  // go
                w.send(std::string("from child"));
                c.recv<int>();  // exit
            },
            w1, ctl_child);
        p.start();
        std::vector<mp::connection::waitable> objects{r1, r2, p.sentinel()};
        CHECK(mp::connection::wait(objects, 20ms).empty());
        ctl.send(1);
        auto ready = mp::connection::wait(objects, 10s);
        REQUIRE(ready.size() == 1);
        CHECK(std::get<mp::Connection>(ready[0]) == r1);
        CHECK(r1.recv<std::string>() == "from child");
        ctl.send(2);
        ready = mp::connection::wait(objects, 10s);
        REQUIRE(ready.size() == 1);
        CHECK(std::get<int>(ready[0]) == p.sentinel());
        std::vector<mp::Process*> procs{&p};
        CHECK(mp::connection::wait(procs, 0).size() == 1);
        p.join();
    }

    SECTION("a closed connection cannot be waited on") {
        r3.close();
        CHECK_THROWS_CONTAINING(mp::ValueError, mp::connection::wait({r1, r3}, 0), "handle is closed");
    }
}

TEST_CASE("a 100 MB message crosses between processes") {
    constexpr std::size_t size = 100 << 20;
    auto [a, b] = mp::Pipe();
    mp::Process p(
        [](mp::Connection c) {
            std::vector<std::uint8_t> big(size);
            for (std::size_t i = 0; i < size; i += 4096) big[i] = std::uint8_t(i / 4096);
            big[size - 1] = 0xab;
            c.send_bytes(big);
            // And back: what the parent sends, returned as its length.
            c.send(c.recv<std::vector<std::int32_t>>().size());
        },
        b);
    p.start();
    auto got = a.recv_bytes();
    REQUIRE(got.size() == size);
    bool ok = true;
    for (std::size_t i = 0; i < size; i += 4096) ok = ok && got[i] == std::byte(i / 4096 % 256);
    CHECK(ok);
    CHECK(got[size - 1] == std::byte{0xab});
    got = {};
    a.send(std::vector<std::int32_t>(size / 4 / 4, 7));  // 25 MB through send()
    CHECK(a.recv<std::size_t>() == size / 4 / 4);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a corrupt length prefix neither allocates it nor trusts it") {
    namespace posix = mp::detail::posix;
    SECTION("a huge length followed by end of file") {
        posix::unique_fd r, w;
        posix::make_pipe(r, w);
        mp::Connection c(r.release(), -1);
        std::uint64_t frame[8] = {std::uint64_t(1) << 40};  // a 1 TiB message
        REQUIRE(::write(w.get(), frame, sizeof frame) == sizeof frame);
        w.reset();
        CHECK_THROWS_AS(c.recv_bytes(), mp::EOFError);  // read what came, no 1 TiB buffer
    }
    SECTION("an impossible length") {
        posix::unique_fd r, w;
        posix::make_pipe(r, w);
        mp::Connection c(r.release(), -1);
        std::uint64_t frame[8] = {~std::uint64_t(0)};
        REQUIRE(::write(w.get(), frame, sizeof frame) == sizeof frame);
        CHECK_THROWS_AS(c.recv_bytes(), std::system_error);
        CHECK(c.closed());
    }
    SECTION("end of file inside the first frame") {
        posix::unique_fd r, w;
        posix::make_pipe(r, w);
        mp::Connection c(r.release(), -1);
        REQUIRE(::write(w.get(), "abc", 3) == 3);
        w.reset();
        CHECK_THROWS_CONTAINING(mp::EOFError, c.recv_bytes(), "end of file during message");
    }
}

TEST_CASE("closed(), readable(), writable(), fileno(), and a closed connection") {
    auto [a, b] = mp::Pipe();
    CHECK_FALSE(a.closed());
    CHECK(a.fileno() >= 0);
    CHECK(a.fileno() != b.fileno());
    mp::Connection copy = a;  // a handle to the same connection
    CHECK(copy == a);
    CHECK_FALSE(copy == b);
    a.close();
    a.close();  // closing twice is fine
    CHECK(copy.closed());
    CHECK_FALSE(copy.readable());
    CHECK_FALSE(copy.writable());
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.fileno(), "handle is closed");
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.send(1), "handle is closed");
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.recv<int>(), "handle is closed");
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.send_bytes("x"), "handle is closed");
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.recv_bytes(), "handle is closed");
    CHECK_THROWS_CONTAINING(mp::ValueError, copy.poll(), "handle is closed");
    mp::Connection none;
    CHECK(none.closed());
    CHECK_THROWS_AS(none.recv<int>(), mp::ValueError);
    CHECK_THROWS_AS(mp::Connection(-1, -1), mp::ValueError);
}

TEST_CASE("a child closes its copy without closing the parent's") {
    auto [a, b] = mp::Pipe();
    mp::Process p(
        [](mp::Connection x, mp::Connection y) {
            x.close();
            y.send(std::string("child closed its a"));
        },
        a, b);
    p.start();
    b.close();
    CHECK(a.recv<std::string>() == "child closed its a");
    CHECK_FALSE(a.closed());  // still open here
    p.join();
    CHECK_THROWS_AS(a.recv<int>(), mp::EOFError);  // the child's b is gone with it
    CHECK_THROWS_AS(a.send(1), std::system_error);
}

TEST_CASE("ends travel to a child as they are: one-way, no longer readable, closed") {
    auto [r, w] = mp::Pipe(false);
    auto [a, b] = mp::Pipe();
    a.send_bytes(std::string(100, 'x'));
    CHECK_THROWS_AS(b.recv_bytes(10), std::system_error);  // b can only send now
    mp::Connection closed = mp::Pipe().first;
    closed.close();
    mp::Process p(
        [](mp::Connection w, mp::Connection b, mp::Connection closed) {
            if (w.readable() || !w.writable()) std::_Exit(2);
            if (b.readable() || !b.writable()) std::_Exit(3);
            if (!closed.closed() || closed.readable() || closed.writable()) std::_Exit(4);
            w.send(std::string("through a handed end"));
            b.send(5);
        },
        w, b, closed);
    p.start();
    w.close();
    CHECK(r.recv<std::string>() == "through a handed end");
    CHECK(a.recv<int>() == 5);
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK_THROWS_AS(r.recv<int>(), mp::EOFError);  // the child's copy of w is gone with it
    // A Connection is handed over at process start only, never in a message (as in Python).
    CHECK_THROWS_CONTAINING(mp::SerializationError, a.send(b), "Connection can only be handed");
    a.send(6);  // still usable
    b.close();
    CHECK_THROWS_AS(a.recv<int>(), mp::EOFError);
}

TEST_CASE("a ping-pong of many round trips (the adaptive spin) stays correct") {
    auto [a, b] = mp::Pipe();
    mp::Process p(
        [](mp::Connection c) {
            for (;;) {
                int x = c.recv<int>();
                if (x < 0) return;
                c.send(x + 1);
            }
        },
        b);
    p.start();
    b.close();
    int x = 0;
    for (int i = 0; i < 2000; ++i) {
        a.send(x);
        x = a.recv<int>();
    }
    CHECK(x == 2000);
    // A slow peer: the receiver must fall back to sleeping and still get every message.
    for (int i = 0; i < 5; ++i) {
        CHECK_FALSE(a.poll(2ms));
        a.send(x);
        x = a.recv<int>();
    }
    a.send(-1);
    p.join();
    CHECK(x == 2005);
}

TEST_CASE("one thread may send while another receives on the same connection") {
    auto pipe = mp::Pipe();
    mp::Connection a = pipe.first, b = pipe.second;
    constexpr int n = 500;
    std::thread echo([b]() mutable {
        for (int i = 0; i < n; ++i) b.send(b.recv<int>() + 1);
    });
    std::thread sender([a]() mutable {
        for (int i = 0; i < n; ++i) a.send(i);
    });
    bool in_order = true;
    for (int i = 0; i < n; ++i) in_order = in_order && a.recv<int>() == i + 1;
    sender.join();
    echo.join();
    CHECK(in_order);
}
