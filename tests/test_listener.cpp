// Listener and Client over Unix sockets and TCP loopback, the authkey handshake (right key,
// wrong key on both sides), hostile clients, and the SHA-256/HMAC behind the handshake.
#include <multiprocessing.hpp>
#include <multiprocessing/connection.hpp>
#include <multiprocessing/detail/hmac.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace mp = multiprocessing;
namespace posix = mp::detail::posix;
using namespace std::chrono_literals;
using mp::connection::Address;
using mp::connection::Client;
using mp::connection::Listener;

namespace {

std::string hex(std::span<const std::byte> d) {
    std::string s;
    for (std::byte b : d) {
        s += "0123456789abcdef"[std::to_integer<int>(b) >> 4];
        s += "0123456789abcdef"[std::to_integer<int>(b) & 15];
    }
    return s;
}

std::string sha256_hex(std::string_view s) {
    mp::detail::sha256 h;
    h.update(s);
    auto d = h.finish();
    return hex(d);
}

std::string hmac_hex(std::string_view key, std::string_view msg) {
    auto d = mp::detail::hmac_sha256(std::as_bytes(std::span(key)), std::as_bytes(std::span(msg)));
    return hex(d);
}

// A private directory for socket files, removed at the end of the test.
struct temp_dir {
    std::string path;
    temp_dir() {
        char tmpl[] = "/tmp/mp-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~temp_dir() { ::rmdir(path.c_str()); }
};

// A raw client socket, for clients that do not follow the protocol.
posix::unique_fd raw_connect(const Address& a) {
    return posix::connect_to(mp::connection::detail::to_socket_address(a));
}

void write_raw(int fd, const void* p, std::size_t n) {
    REQUIRE(::write(fd, p, n) == ssize_t(n));
}

// A frame head as Connection writes it: 8-byte length, padded to 64 bytes.
std::vector<std::byte> frame_head(std::uint64_t len, std::string_view payload = {}) {
    std::vector<std::byte> f(64);
    std::memcpy(f.data(), &len, sizeof len);
    if (!payload.empty())
        std::memcpy(f.data() + 8, payload.data(), std::min<std::size_t>(payload.size(), 56));
    return f;
}

// Runs `client` in a child process, which exits 0 when it returned and 1 when it threw.
template <class F>
mp::Process run_client(F client) {
    mp::Process p(client);
    p.start();
    return p;
}

void echo_once(Listener& l) {
    auto c = l.accept();
    c.send(c.recv<std::string>() + "!");
}

}  // namespace

TEST_CASE("SHA-256 and HMAC-SHA256 match the FIPS 180-4 and RFC 4231 vectors") {
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first).
    CHECK(hmac_hex(std::string(20, '\x0b'), "Hi There") ==
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK(hmac_hex("Jefe", "what do ya want for nothing?") ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(hmac_hex(std::string(131, '\xaa'),
                   "Test Using Larger Than Block-Size Key - Hash Key First") ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    std::string a = "abcdef", b = "abcdef", c = "abcdeg";
    CHECK(mp::detail::compare_digest(std::as_bytes(std::span(a)), std::as_bytes(std::span(b))));
    CHECK_FALSE(
        mp::detail::compare_digest(std::as_bytes(std::span(a)), std::as_bytes(std::span(c))));
    CHECK_FALSE(mp::detail::compare_digest(std::as_bytes(std::span(a)),
                                           std::as_bytes(std::span(a).first(5))));
}

TEST_CASE("Listener and Client over a Unix socket file, and close() removes the file") {
    temp_dir dir;
    std::string path = dir.path + "/listener.sock";
    Listener l(path);
    CHECK(l.address() == Address(path));
    CHECK(l.address().family() == "AF_UNIX");
    CHECK_FALSE(l.last_accepted().has_value());
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) == 0);
    auto p = run_client([path] {
        auto c = Client(path);
        c.send(std::string("hello"));
        if (c.recv<std::string>() != "hello!") std::exit(2);
    });
    echo_once(l);
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(l.last_accepted().has_value());
    l.close();
    CHECK(l.closed());
    CHECK(::stat(path.c_str(), &st) == -1);
    CHECK_THROWS_AS(l.accept(), mp::ValueError);
}

TEST_CASE("Listener() picks an abstract Unix address and AF_INET a loopback port") {
    Listener l;
    CHECK(l.address().family() == "AF_UNIX");
    REQUIRE(!l.address().path().empty());
    CHECK(l.address().path()[0] == '\0');
    CHECK(l.address().to_string().starts_with("'\\x00mp-"));

    Listener t(mp::connection::ListenerOptions{.family = "AF_INET"});
    CHECK(t.address().family() == "AF_INET");
    CHECK(t.address().host() == "127.0.0.1");
    CHECK(t.address().port() > 0);

    CHECK_THROWS_AS(Listener(Address("127.0.0.1", 0), "AF_UNIX"), mp::ValueError);
    CHECK_THROWS_AS(Listener(Address(), "AF_BOGUS"), mp::ValueError);
}

TEST_CASE("Listener and Client over TCP loopback on port 0, large messages both ways") {
    Listener l({"127.0.0.1", 0}, std::nullopt, 4);
    Address a = l.address();
    REQUIRE(a.port() != 0);
    CHECK(a.to_string() == "('127.0.0.1', " + std::to_string(a.port()) + ")");
    auto p = run_client([a] {
        auto c = Client(a);
        auto v = c.recv<std::vector<std::uint32_t>>();
        for (auto& x : v) x += 1;
        c.send(v);
    });
    auto c = l.accept();
    std::vector<std::uint32_t> big(1 << 18);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = std::uint32_t(i);
    c.send(big);
    auto back = c.recv<std::vector<std::uint32_t>>();
    REQUIRE(back.size() == big.size());
    CHECK(back.front() == 1);
    CHECK(back.back() == big.back() + 1);
    REQUIRE(l.last_accepted().has_value());
    CHECK(l.last_accepted()->host() == "127.0.0.1");
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("with the right authkey both sides complete the handshake (Unix and TCP)") {
    for (Address address : {Address(), Address("127.0.0.1", 0)}) {
        Listener l(address, std::nullopt, 4, "secret");
        Address a = l.address();
        auto p = run_client([a] {
            auto c = Client(a, std::nullopt, "secret");
            c.send(std::string("hi"));
            if (c.recv<std::string>() != "hi!") std::exit(2);
        });
        echo_once(l);
        p.join();
        CHECK(p.exitcode() == 0);
    }
}

TEST_CASE("a wrong authkey fails on both sides and the listener serves the next client") {
    for (Address address : {Address(), Address("127.0.0.1", 0)}) {
        Listener l(address, std::nullopt, 4, "secret");
        Address a = l.address();
        auto pipe = mp::Pipe(false);
        auto reader = pipe.first, writer = pipe.second;
        auto bad = run_client([a, writer]() mutable {
            try {
                Client(a, std::nullopt, "wrong key");
                writer.send(std::string("connected"));
            } catch (const mp::AuthenticationError& e) {
                writer.send(std::string(e.what()));
            }
        });
        try {
            l.accept();
            FAIL("accept() succeeded with a wrong key");
        } catch (const mp::AuthenticationError& e) {
            CHECK(std::string(e.what()) == "digest received was wrong");
        }
        CHECK(reader.recv<std::string>() == "digest sent was rejected");
        bad.join();
        auto good = run_client([a] {
            auto c = Client(a, std::nullopt, "secret");
            c.send(std::string("next"));
            if (c.recv<std::string>() != "next!") std::exit(2);
        });
        echo_once(l);
        good.join();
        CHECK(good.exitcode() == 0);
    }
}

TEST_CASE("a client with a key facing a server that sends garbage fails cleanly") {
    Listener l({"127.0.0.1", 0}, std::nullopt, 4);  // no key: no challenge is sent
    Address a = l.address();
    auto p = run_client([a] {
        try {
            Client(mp::connection::ClientOptions{
                .address = a, .authkey = "secret", .handshake_timeout = 200ms});
        } catch (const mp::AuthenticationError&) {
            std::exit(0);
        }
        std::exit(3);
    });
    auto c = l.accept();
    c.send_bytes(std::string("#CHALLENGE#x"));  // too short to be a challenge
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("hostile clients cost one failed accept each and never wedge the listener") {
    Listener l(mp::connection::ListenerOptions{.address = {"127.0.0.1", 0},
                                               .backlog = 8,
                                               .authkey = "secret",
                                               .handshake_timeout = 300ms});
    Address a = l.address();

    auto expect_rejected = [&](const char* what) {
        INFO(what);
        auto start = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(l.accept(), mp::AuthenticationError);
        CHECK(std::chrono::steady_clock::now() - start < 3s);
    };

    {  // a length prefix far beyond the 256 bytes a handshake message may have
        auto fd = raw_connect(a);
        auto f = frame_head(std::uint64_t(1) << 40);
        write_raw(fd.get(), f.data(), f.size());
        expect_rejected("oversized length prefix");
    }
    {  // a length no message could have
        auto fd = raw_connect(a);
        auto f = frame_head(~std::uint64_t(0));
        write_raw(fd.get(), f.data(), f.size());
        expect_rejected("absurd length prefix");
    }
    {  // a message cut short, then the client hangs up
        auto fd = raw_connect(a);
        auto f = frame_head(200, "only part of it");
        write_raw(fd.get(), f.data(), f.size());
        fd.reset();
        expect_rejected("truncated message");
    }
    {  // half a frame head, then silence
        auto fd = raw_connect(a);
        char half[10] = {};
        write_raw(fd.get(), half, sizeof half);
        expect_rejected("truncated frame head");
    }
    {  // a well-framed answer that is garbage
        auto fd = raw_connect(a);
        auto f = frame_head(40, "{sha256}not a digest at all, just junk!");
        write_raw(fd.get(), f.data(), f.size());
        expect_rejected("garbage answer");
    }
    {  // random bytes
        auto fd = raw_connect(a);
        std::vector<unsigned char> junk(300);
        posix::random_bytes(junk.data(), junk.size());
        write_raw(fd.get(), junk.data(), junk.size());
        expect_rejected("random bytes");
    }
    {  // a client that connects and says nothing: the handshake times out
        auto fd = raw_connect(a);
        auto start = std::chrono::steady_clock::now();
        try {
            l.accept();
            FAIL("a silent client was accepted");
        } catch (const mp::AuthenticationError& e) {
            CHECK(std::string(e.what()) == "handshake timed out");
        }
        CHECK(std::chrono::steady_clock::now() - start >= 250ms);
    }
    {  // a client that hangs up at once
        raw_connect(a).reset();
        expect_rejected("immediate hang-up");
    }
    // After all that, a real client is served.
    auto p = run_client([a] {
        auto c = Client(a, std::nullopt, "secret");
        c.send(std::string("still there?"));
        if (c.recv<std::string>() != "still there?!") std::exit(2);
    });
    echo_once(l);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("hostile input on an accepted connection throws, never crashes") {
    Listener l({"127.0.0.1", 0}, std::nullopt, 8);
    Address a = l.address();
    {  // a length prefix beyond recv_bytes' maxlength
        auto fd = raw_connect(a);
        auto f = frame_head(std::uint64_t(1) << 40);
        write_raw(fd.get(), f.data(), f.size());
        auto c = l.accept();
        try {
            c.recv_bytes(1 << 20);
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EMSGSIZE);
        }
    }
    {  // a length no message could have, without a maxlength
        auto fd = raw_connect(a);
        auto f = frame_head(~std::uint64_t(0));
        write_raw(fd.get(), f.data(), f.size());
        auto c = l.accept();
        CHECK_THROWS_AS(c.recv_bytes(), std::system_error);
    }
    {  // a message cut short by a hang-up
        auto fd = raw_connect(a);
        auto f = frame_head(1000, "part");
        write_raw(fd.get(), f.data(), f.size());
        fd.reset();
        auto c = l.accept();
        CHECK_THROWS_AS(c.recv_bytes(), mp::EOFError);
    }
    {  // garbage that is framed well but is no message
        auto fd = raw_connect(a);
        auto f = frame_head(20, "not a typed message");
        write_raw(fd.get(), f.data(), f.size());
        auto c = l.accept();
        CHECK_THROWS_AS(c.recv<int>(), mp::SerializationError);
    }
    {  // a silent client: poll with a timeout tells, recv is not forced to block
        auto fd = raw_connect(a);
        auto c = l.accept();
        CHECK_FALSE(c.poll(50ms));
    }
}

TEST_CASE("Client reports a refused or missing address") {
    Address a;
    {
        Listener l({"127.0.0.1", 0});
        a = l.address();
    }
    try {
        Client(a);
        FAIL("connected to a closed port");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ECONNREFUSED);
    }
    try {
        Client("/nonexistent/mp-test.sock");
        FAIL("connected to a missing path");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ENOENT);
    }
    CHECK_THROWS_AS(Client(Address()), mp::ValueError);
}

TEST_CASE("a Listener is a shared handle and survives being copied") {
    Listener l;
    Listener copy = l;
    Address a = l.address();
    auto p = run_client([a] {
        auto c = Client(a);
        c.send(std::string("copy"));
        if (c.recv<std::string>() != "copy!") std::exit(2);
    });
    echo_once(copy);
    p.join();
    CHECK(p.exitcode() == 0);
    copy.close();
    CHECK(l.closed());
}
