// libFuzzer target for what a peer can send before and after authentication: the bytes are the
// whole stream from a hostile peer (a socket whose writer then hangs up). The first byte picks
// the target:
//   0  the listener's side of the handshake (Listener.accept with an authkey)
//   1  the client's side of the handshake (Client with an authkey)
//   2  Connection framing: recv_bytes with a maxlength, then typed recv
//   3  the manager server's request handling, as a sequence of requests
// Each must end in the exceptions its contract names (AuthenticationError; EOFError,
// EMSGSIZE or SerializationError; an error reply), never a crash, a hang, a sanitizer report or
// an allocation the input cannot justify.
//
// Built with -DMP_FUZZ_MAKE_SEEDS, it writes a seed corpus instead:
//     fuzz_handshake_seeds corpus/ && fuzz_handshake corpus/ -max_total_time=60
#include <multiprocessing/connection.hpp>
#include <multiprocessing/detail/manager_server.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

namespace mp = multiprocessing;
namespace mgr = mp::detail::mgr;
namespace posix = mp::detail::posix;

namespace {

// A connected pair: the Connection under test, and the hostile peer's end, which has already
// written `data` and hung up (so reads end in EOF rather than waiting).
mp::Connection feed(std::span<const std::uint8_t> data) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    // Room for all of it, and for what the side under test writes back.
    int size = 1 << 20;
    ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t w = ::write(sv[1], data.data() + done, data.size() - done);
        if (w <= 0) std::abort();
        done += std::size_t(w);
    }
    ::shutdown(sv[1], SHUT_WR);
    // The peer keeps reading end open until we are done, so our writes do not fail with EPIPE...
    static thread_local posix::unique_fd peer;
    peer.reset(sv[1]);
    return mp::connection::detail::adopt_socket(posix::unique_fd(sv[0]));
}

mp::detail::deadline soon() {
    return mp::detail::deadline::after(std::chrono::seconds(5));
}

void handshake(std::span<const std::uint8_t> data, bool server_side) {
    auto c = feed(data);
    try {
        if (server_side)
            mp::connection::detail::server_handshake(c, "fuzz key", soon());
        else
            mp::connection::detail::client_handshake(c, "fuzz key", soon());
    } catch (const mp::AuthenticationError&) {
    }
}

void framing(std::span<const std::uint8_t> data) {
    auto c = feed(data);
    try {
        for (int i = 0; i < 4; ++i) (void)c.recv_bytes(1 << 16);
        for (;;) (void)c.recv<std::vector<std::string>>();
    } catch (const mp::EOFError&) {
    } catch (const mp::SerializationError&) {
    } catch (const std::system_error& e) {
        if (e.code().value() != EMSGSIZE) throw;
    }
}

// One object of each kind, ids 1.., so that fuzzed requests have something to act on.
void populate(mgr::server& s, mgr::client_context& ctx) {
    auto create = [&](mgr::kind k, std::vector<mgr::blob> extra) {
        extra.insert(extra.begin(), mgr::encode(k));
        auto in = mp::serialize(mgr::request{0, mgr::op::create, -1, std::move(extra)});
        (void)s.handle(ctx, in);
    };
    auto i64 = [](std::int64_t v) { return mgr::encode(v); };
    create(mgr::kind::dict, {});
    create(mgr::kind::list, {mgr::encode(1), mgr::encode(2)});
    create(mgr::kind::array, {mgr::encode(1.5)});
    create(mgr::kind::value, {mgr::encode(7)});
    create(mgr::kind::namespace_, {});
    create(mgr::kind::queue, {i64(2)});
    create(mgr::kind::lock, {});
    create(mgr::kind::rlock, {});
    create(mgr::kind::semaphore, {i64(1)});
    create(mgr::kind::bounded_semaphore, {i64(1)});
    create(mgr::kind::condition, {});
    create(mgr::kind::event, {});
    create(mgr::kind::barrier, {i64(2), i64(-1)});
}

// The input is a sequence of requests, each prefixed by a 16-bit length. Blocking calls are
// made non-blocking (a single client would wait forever for itself).
void requests(std::span<const std::uint8_t> data) {
    mgr::server s("fuzz key", {});
    mgr::client_context ctx{1, -1, false};
    populate(s, ctx);
    while (data.size() >= 2) {
        std::size_t n =
            std::min<std::size_t>(data[0] | (std::size_t(data[1]) << 8), data.size() - 2);
        auto bytes = std::as_bytes(data.subspan(2, n));
        data = data.subspan(2 + n);
        std::vector<std::byte> in(bytes.begin(), bytes.end());
        try {
            auto rq = mp::deserialize<mgr::request>(bytes);
            rq.timeout_ns = 0;
            in = mp::serialize(rq);
        } catch (const mp::SerializationError&) {
            // Not a request: the server must say so in a reply.
        }
        auto out = s.handle(ctx, in);
        (void)mp::deserialize<mgr::reply>(out);  // every reply decodes
    }
}

#ifdef MP_FUZZ_MAKE_SEEDS

void write_seed(const std::string& dir, const std::string& name, std::uint8_t target,
                const std::vector<std::byte>& body) {
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f.put(char(target));
    f.write(reinterpret_cast<const char*>(body.data()), std::streamsize(body.size()));
}

std::vector<std::byte> frame(std::string_view payload) {
    std::vector<std::byte> f(8);
    std::uint64_t len = payload.size();
    std::memcpy(f.data(), &len, sizeof len);
    for (char c : payload) f.push_back(std::byte(c));
    if (f.size() < 64) f.resize(64);
    return f;
}

std::vector<std::byte> request_seq(std::initializer_list<mgr::request> rqs) {
    std::vector<std::byte> out;
    for (const auto& rq : rqs) {
        auto b = mp::serialize(rq);
        out.push_back(std::byte(b.size() & 255));
        out.push_back(std::byte(b.size() >> 8));
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

#endif

}  // namespace

#ifdef MP_FUZZ_MAKE_SEEDS

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s corpus-dir\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    std::string digest = std::string("{sha256}") + std::string(32, 'x');
    write_seed(dir, "hs-server", 0, frame(digest));
    auto challenge = frame(std::string("#CHALLENGE#{sha256}") + std::string(40, 'c'));
    auto welcome = frame("#WELCOME#");
    challenge.insert(challenge.end(), welcome.begin(), welcome.end());
    write_seed(dir, "hs-client", 1, challenge);
    auto frames = frame("hello");
    auto msg = mp::detail::pack_message(std::vector<std::string>{"a", "bc"});
    auto typed = frame(std::string_view(reinterpret_cast<const char*>(msg.data()), msg.size()));
    frames.insert(frames.end(), typed.begin(), typed.end());
    write_seed(dir, "framing", 2, frames);
    auto k = mgr::encode(5), v = mgr::encode(std::string("five"));
    write_seed(dir, "requests", 3,
               request_seq({{1, mgr::op::dict_set, -1, {k, v}},
                            {1, mgr::op::dict_get, -1, {k}},
                            {2, mgr::op::list_append, -1, {k}},
                            {6, mgr::op::queue_put, -1, {v}},
                            {6, mgr::op::queue_get, -1, {}},
                            {8, mgr::op::acquire, -1, {}},
                            {11, mgr::op::condition_notify, -1, {mgr::encode<std::int64_t>(1)}},
                            {13, mgr::op::barrier_wait, -1, {}}}));
    return 0;
}

#else

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::span<const std::uint8_t> rest(data + 1, size - 1);
    switch (data[0] % 4) {
        case 0: handshake(rest, true); break;
        case 1: handshake(rest, false); break;
        case 2: framing(rest); break;
        case 3: requests(rest); break;
    }
    return 0;
}

#endif
