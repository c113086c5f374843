// mp::Queue, mp::SimpleQueue, mp::JoinableQueue and the shared ring under them: semantics,
// many producers and consumers across processes, growth, Python's feeder-thread traps (which
// cannot happen here), and users killed at any moment.
#include <multiprocessing.hpp>
#include <multiprocessing/queues.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "ring_helpers.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;
using mp::detail::forever;
using mp::detail::ring_span;
using mp::detail::shared_ring;
using test::pattern;
using test::ring_get;
using test::ring_put;

namespace {

// ---- helpers --------------------------------------------------------------------------------

// A self-checking item: [seq, n, f(seq, 0), ..., f(seq, n - 1)].
std::vector<std::uint64_t> make_item(std::uint64_t seq, std::size_t n) {
    std::vector<std::uint64_t> v(n + 2);
    v[0] = seq;
    v[1] = n;
    for (std::size_t i = 0; i < n; ++i) v[i + 2] = seq * 0x9e3779b97f4a7c15ull + i;
    return v;
}
bool item_ok(const std::vector<std::uint64_t>& v) {
    if (v.size() < 2 || v[1] != v.size() - 2) return false;
    for (std::size_t i = 0; i + 2 < v.size(); ++i)
        if (v[i + 2] != v[0] * 0x9e3779b97f4a7c15ull + i) return false;
    return true;
}

// Entries of /dev/shm that the library would have named.
std::vector<std::string> shm_entries() {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
        auto name = e.path().filename().string();
        if (name.rfind("mp-", 0) == 0 || name.rfind("mp_", 0) == 0) out.push_back(name);
    }
    return out;
}
// This process's descriptors of queue files.
int queue_fds() {
    int n = 0;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        auto target = std::filesystem::read_symlink(e.path(), ec);
        if (!ec && target.string().find("memfd:mp-queue") != std::string::npos) ++n;
    }
    return n;
}

// Waits until process `pid` sleeps in the kernel (state S), so it is blocked, not spinning.
bool sleeping(int pid, std::chrono::milliseconds limit = 2s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(f, line);
        auto close = line.rfind(')');
        if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'S')
            return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

template <class F>
double seconds_of(F&& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct point {
    int x;
    double y;
};

}  // namespace

// ---- the ring ---------------------------------------------------------------------------------

TEST_CASE("ring: FIFO of records of every size, wrapping around the end") {
    shared_ring r(0, 0, 4096);
    std::mt19937 rng(1);
    std::vector<std::string> expect;
    std::size_t next_in = 0, next_out = 0;
    for (int round = 0; round < 2000; ++round) {
        if (rng() % 3 != 0 || next_out == next_in) {
            expect.push_back(pattern(rng() % 700, char(round)));
            REQUIRE(ring_put(r, expect.back()));
            ++next_in;
        } else {
            auto got = ring_get(r, mp::detail::try_only);
            REQUIRE(got);
            REQUIRE(*got == expect[next_out++]);
        }
        REQUIRE(r.qsize() == next_in - next_out);
    }
    while (next_out < next_in) REQUIRE(*ring_get(r) == expect[next_out++]);
    REQUIRE(r.empty());
    REQUIRE_FALSE(ring_get(r, mp::detail::try_only));
}

TEST_CASE("ring: growth by 2 or 8 keeps wrapped and unwrapped records intact") {
    for (int variant = 0; variant < 6; ++variant) {
        shared_ring r(0, 0, 4096);
        // Shift head so that the next records wrap around the end (a long or a short part
        // after the wrap) or do not; then grow by 2 (variants 0-2) or by 8 (3-5).
        constexpr std::size_t leads[] = {3000, 2000, 8};
        const std::size_t lead = leads[variant % 3];
        REQUIRE(ring_put(r, pattern(lead, 'a')));
        REQUIRE(ring_put(r, pattern(8, 'b')));  // keeps the ring non-empty after the get
        REQUIRE(ring_get(r)->size() == lead);
        std::vector<std::string> expect{pattern(8, 'b')};
        for (int i = 0; expect.size() < 6; ++i) {
            expect.push_back(pattern(500, char('c' + i)));
            REQUIRE(ring_put(r, expect.back()));
        }
        REQUIRE(r.capacity() == 4096);
        expect.push_back(pattern(variant < 3 ? 5000 : 28000, 'z'));  // does not fit: grows
        REQUIRE(ring_put(r, expect.back()));
        REQUIRE(r.capacity() == (variant < 3 ? 8192u : 32768u));
        for (auto& e : expect) REQUIRE(*ring_get(r) == e);
        REQUIRE(r.empty());
    }
}

TEST_CASE("ring: a fill that throws adds nothing; a take that throws still removes") {
    shared_ring r;
    REQUIRE_THROWS_AS(r.put(
                          10, [](const ring_span&) { throw std::runtime_error("boom"); }, forever),
                      std::runtime_error);
    REQUIRE(r.empty());
    REQUIRE(ring_put(r, "one"));
    REQUIRE(ring_put(r, "two"));
    REQUIRE_THROWS_AS(r.get([](const ring_span&) { throw std::runtime_error("bad"); }, forever),
                      std::runtime_error);
    REQUIRE(r.qsize() == 1);
    REQUIRE(*ring_get(r) == "two");
}

// ---- Queue semantics --------------------------------------------------------------------------

TEST_CASE("Queue: put/get, FIFO, qsize, empty, full for several item types") {
    mp::Queue<int> q;
    REQUIRE(q.empty());
    REQUIRE_FALSE(q.full());
    for (int i = 0; i < 100; ++i) q.put(i);
    REQUIRE(q.qsize() == 100);
    REQUIRE_FALSE(q.full());
    for (int i = 0; i < 100; ++i) REQUIRE(q.get() == i);
    REQUIRE(q.empty());

    mp::Queue<std::string> s;
    s.put("hello");
    s.put(std::string(100'000, 'x'));
    s.put("");
    REQUIRE(s.get() == "hello");
    REQUIRE(s.get() == std::string(100'000, 'x'));
    REQUIRE(s.get().empty());

    mp::Queue<point> p;
    p.put(point{1, 2.5});
    auto got = p.get();
    REQUIRE(got.x == 1);
    REQUIRE(got.y == 2.5);

    mp::Queue<std::optional<int>> o;
    o.put(7);
    o.put(std::nullopt);
    REQUIRE(o.get() == 7);
    REQUIRE(o.get() == std::nullopt);

    mp::Queue<std::vector<std::uint64_t>> v;
    v.put(make_item(3, 1000));
    REQUIRE(item_ok(v.get()));
}

TEST_CASE("Queue: every encoding survives records that wrap around the ring") {
    // One item always stays queued, so the head walks around the 64 KiB ring many times.
    using array_t = std::array<std::uint32_t, 301>;  // bitwise, 1204 bytes
    mp::Queue<std::string> s;                         // element bytes
    mp::Queue<std::vector<std::uint64_t>> v;          // element bytes
    mp::Queue<std::vector<std::string>> g;            // serialized
    mp::Queue<std::map<std::string, int>> m;          // serialized
    mp::Queue<array_t> a;
    std::string prev_s = "seed";
    std::vector<std::uint64_t> prev_v = make_item(999, 3);
    std::vector<std::string> prev_g{"seed"};
    std::map<std::string, int> prev_m{{"seed", 1}};
    array_t prev_a{};
    s.put(prev_s);
    v.put(prev_v);
    g.put(prev_g);
    m.put(prev_m);
    a.put(prev_a);
    for (int i = 0; i < 300; ++i) {
        std::string text = pattern(std::size_t(1000 + i * 3), char(i));
        std::vector<std::uint64_t> item = make_item(std::uint64_t(i), std::size_t(100 + i));
        std::vector<std::string> strings{text, "x", std::to_string(i)};
        std::map<std::string, int> map{{text, i}, {"k", -i}};
        array_t arr;
        for (std::size_t k = 0; k < arr.size(); ++k) arr[k] = std::uint32_t(i * 1000 + int(k));
        s.put(text);
        v.put(item);
        g.put(strings);
        m.put(map);
        a.put(arr);
        REQUIRE(s.get() == prev_s);
        REQUIRE(v.get() == prev_v);
        REQUIRE(g.get() == prev_g);
        REQUIRE(m.get() == prev_m);
        REQUIRE(a.get() == prev_a);
        prev_s = text;
        prev_v = item;
        prev_g = strings;
        prev_m = map;
        prev_a = arr;
    }
    REQUIRE(s.qsize() == 1);
    REQUIRE(mp::detail::queue_access::ring(s).capacity() == 64 * 1024);
}

TEST_CASE("Queue: a record that does not decode is dropped and its error thrown") {
    mp::Queue<int> q;
    auto& ring = mp::detail::queue_access::ring(q);
    REQUIRE(ring_put(ring, "abc"));
    q.put(5);
    REQUIRE_THROWS_AS(q.get(), mp::SerializationError);
    REQUIRE(q.get() == 5);

    mp::Queue<std::vector<std::string>> g;
    REQUIRE(ring_put(mp::detail::queue_access::ring(g), "\x05zz"));
    g.put({"ok"});
    REQUIRE_THROWS_AS(g.get(), mp::SerializationError);
    REQUIRE(g.get() == std::vector<std::string>{"ok"});
}

TEST_CASE("Queue: a handle rebuilt from the descriptor (the spawn path) is the same queue") {
    mp::JoinableQueue<int> q;
    using access = mp::detail::queue_access;
    auto q2 = access::adopt<mp::JoinableQueue<int>>(
        mp::detail::posix::unique_fd(::dup(access::fd(q))));
    q.put(1);
    REQUIRE(q2.get() == 1);
    q2.task_done();
    REQUIRE(q.join(0s));
    REQUIRE_THROWS_AS(access::adopt<mp::Queue<long>>(
                          mp::detail::posix::unique_fd(::dup(access::fd(q)))),
                      std::invalid_argument);
}

TEST_CASE("Queue: timeouts and nowait raise Empty and Full") {
    mp::Queue<int> q(2);
    REQUIRE(q.maxsize() == 2);
    REQUIRE_THROWS_AS(q.get_nowait(), mp::Empty);
    double t = seconds_of([&] { REQUIRE_THROWS_AS(q.get(50ms), mp::Empty); });
    REQUIRE(t >= 0.049);
    REQUIRE(t < 2.0);
    t = seconds_of([&] { REQUIRE_THROWS_AS(q.get(0.03), mp::Empty); });
    REQUIRE(t >= 0.029);
    REQUIRE_THROWS_AS(q.get(0s), mp::Empty);
    REQUIRE_THROWS_AS(q.get(-1.0), mp::Empty);  // Python: a negative timeout counts as zero

    q.put_nowait(1);
    q.put(2, 1s);
    REQUIRE(q.full());
    REQUIRE(q.qsize() == 2);
    REQUIRE_THROWS_AS(q.put_nowait(3), mp::Full);
    t = seconds_of([&] { REQUIRE_THROWS_AS(q.put(3, 40ms), mp::Full); });
    REQUIRE(t >= 0.039);
    REQUIRE_THROWS_AS(q.put(3, 0.01), mp::Full);
    REQUIRE(q.get_nowait() == 1);
    REQUIRE(q.get(1s) == 2);
}

TEST_CASE("Queue: close() makes put and get throw ValueError; the no-ops stay no-ops") {
    mp::Queue<int> q;
    auto copy = q;
    q.put(1);
    q.close();
    q.join_thread();
    q.cancel_join_thread();
    REQUIRE_THROWS_AS(q.put(2), mp::ValueError);
    REQUIRE_THROWS_WITH(q.put(2), "Queue is closed");
    REQUIRE_THROWS_WITH(q.get(), "Queue is closed");
    REQUIRE_THROWS_WITH(copy.get_nowait(), "Queue is closed");
    REQUIRE_THROWS_WITH(copy.put_nowait(1), "Queue is closed");
    REQUIRE_THROWS_AS(q.get(1s), std::logic_error);
    REQUIRE(q.qsize() == 1);
    q.close();  // twice is fine, as in Python

    mp::SimpleQueue<int> s;
    s.close();
    REQUIRE_THROWS_WITH(s.put(1), "Queue is closed");
    REQUIRE_THROWS_WITH(s.get(), "Queue is closed");
}

TEST_CASE("Queue: a child's close() does not close the parent's handle") {
    mp::Queue<int> q;
    mp::Process p([](mp::Queue<int> q) { q.put(1); q.close(); }, q);
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
    REQUIRE(q.get() == 1);
    q.put(2);
    REQUIRE(q.get() == 2);
}

// ---- across processes -------------------------------------------------------------------------

TEST_CASE("Queue: a copy is the same queue, in this process and in a child") {
    mp::Queue<int> q;
    auto q2 = q;
    q2.put(5);
    REQUIRE(q.get() == 5);
    mp::Process p([](mp::Queue<int> q) { q.put(q.get() * 2); }, q2);
    p.start();
    q.put(21);
    p.join();
    REQUIRE(p.exitcode() == 0);
    REQUIRE(q.get() == 42);
}

// [fork]: runs once, whatever the suite's method; it picks its methods itself.
TEST_CASE("Queue: a child started by spawn or forkserver gets a working handle", "[fork]") {
    for (const char* method : {"spawn", "forkserver"}) {
        mp::Queue<std::string> in, out;
        mp::JoinableQueue<int> jq(2);
        mp::SimpleQueue<std::vector<std::uint64_t>> sq;
        auto ctx = mp::get_context(method);
        auto p = ctx.Process(
            [](mp::Queue<std::string> in, mp::Queue<std::string> out, mp::JoinableQueue<int> jq,
               mp::SimpleQueue<std::vector<std::uint64_t>> sq) {
                out.put(in.get() + " back");
                for (int i = 1; i <= 3; ++i) jq.put(i);  // blocks at maxsize 2
                jq.join();
                sq.put(make_item(5, 100));
            },
            in, out, jq, sq);
        p.start();
        in.put(method);
        REQUIRE(out.get(30s) == std::string(method) + " back");
        int sum = 0;
        for (int i = 0; i < 3; ++i) {
            sum += jq.get(30s);
            jq.task_done();
        }
        REQUIRE(sum == 6);
        REQUIRE(item_ok(sq.get()));
        p.join();
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Queue: a queue cannot be sent in a message, as in Python") {
    mp::Queue<int> q;
    REQUIRE_THROWS_AS(mp::serialize(q), mp::SerializationError);
    mp::SimpleQueue<int> s;
    REQUIRE_THROWS_AS(mp::serialize(s), mp::SerializationError);
}

TEST_CASE("Queue: get with a timeout returns as soon as another process puts") {
    mp::Queue<int> q, go;
    mp::Process p([](mp::Queue<int> q, mp::Queue<int> go) { go.get(); q.put(9); }, q, go);
    p.start();
    go.put(1);
    double t = seconds_of([&] { REQUIRE(q.get(10s) == 9); });
    REQUIRE(t < 5.0);
    p.join();
}

TEST_CASE("Queue: maxsize blocks a producer in another process until a get makes room") {
    mp::Queue<int> q(2);
    mp::Queue<int> events;
    mp::Process p(
        [](mp::Queue<int> q, mp::Queue<int> events) {
            q.put(1);
            q.put(2);
            events.put(0);  // next put blocks
            q.put(3);
            events.put(1);
            for (int i = 4; i <= 100; ++i) q.put(i);
        },
        q, events);
    p.start();
    REQUIRE(events.get() == 0);
    REQUIRE(sleeping(*p.pid()));
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(events.get(20ms), mp::Empty);  // still blocked
    REQUIRE(q.get() == 1);
    REQUIRE(events.get(10s) == 1);
    for (int i = 2; i <= 100; ++i) REQUIRE(q.get(10s) == i);
    p.join();
    REQUIRE(p.exitcode() == 0);
    REQUIRE(q.empty());
}

TEST_CASE("Queue: a get blocked forever wakes for every item (ping-pong between processes)") {
    mp::Queue<int> ping, pong;
    constexpr int rounds = 2000;
    mp::Process p(
        [](mp::Queue<int> ping, mp::Queue<int> pong) {
            for (;;) {
                int v = ping.get();
                if (v < 0) return;
                pong.put(v + 1);
            }
        },
        ping, pong);
    p.start();
    for (int i = 0; i < rounds; ++i) {
        ping.put(i);
        REQUIRE(pong.get() == i + 1);
        if (i % 500 == 0) REQUIRE(sleeping(*p.pid()));  // the child sleeps, then still wakes
    }
    ping.put(-1);
    p.join();
    REQUIRE(p.exitcode() == 0);
}

TEST_CASE("Queue: threads of one process share a handle safely") {
    mp::Queue<std::uint64_t> q(64);
    constexpr std::uint64_t per = 20'000;
    std::atomic<std::uint64_t> sum{0}, count{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t)
        ts.emplace_back([&, t] {
            for (std::uint64_t i = 1; i <= per; ++i) q.put(i + std::uint64_t(t) * per);
        });
    for (int t = 0; t < 2; ++t)
        ts.emplace_back([&] {
            for (std::uint64_t i = 0; i < per; ++i) {
                sum += q.get();
                ++count;
            }
        });
    for (auto& t : ts) t.join();
    const std::uint64_t n = 2 * per;
    REQUIRE(count == n);
    REQUIRE(sum == n * (n + 1) / 2);
    REQUIRE(q.empty());
}

TEST_CASE("Queue: 4 producers x 4 consumers, every item exactly once, qsize exact") {
    constexpr int producers = 4, consumers = 4;
    constexpr std::uint64_t per = 5000;
    mp::Queue<std::uint64_t> q;
    mp::Queue<std::vector<std::uint64_t>> results;  // per consumer: count, sum, xor-sum of squares
    auto produce = [](mp::Queue<std::uint64_t> q, std::uint64_t first, std::uint64_t n) {
        for (std::uint64_t i = 0; i < n; ++i) q.put(first + i);
    };
    // Phase 1: producers only; qsize is exact once they are done.
    std::vector<std::unique_ptr<mp::Process>> ps;
    for (int k = 0; k < producers; ++k)
        ps.push_back(std::make_unique<mp::Process>(produce, q, 1 + std::uint64_t(k) * per, per / 2));
    for (auto& p : ps) p->start();
    for (auto& p : ps) p->join();
    REQUIRE(q.qsize() == producers * per / 2);

    // Phase 2: consumers and the second half of the producers run together.
    auto consume = [](mp::Queue<std::uint64_t> q, mp::Queue<std::vector<std::uint64_t>> results) {
        std::uint64_t count = 0, sum = 0, sq = 0;
        for (;;) {
            std::uint64_t v = q.get();
            if (v == 0) break;
            ++count;
            sum += v;
            sq ^= v * v;
        }
        results.put({count, sum, sq});
    };
    std::vector<std::unique_ptr<mp::Process>> cs;
    for (int k = 0; k < consumers; ++k)
        cs.push_back(std::make_unique<mp::Process>(consume, q, results));
    for (auto& c : cs) c->start();
    ps.clear();
    for (int k = 0; k < producers; ++k)
        ps.push_back(std::make_unique<mp::Process>(produce, q, 1 + std::uint64_t(k) * per + per / 2,
                                                   per - per / 2));
    for (auto& p : ps) p->start();
    for (auto& p : ps) p->join();
    for (int k = 0; k < consumers; ++k) q.put(0);
    std::uint64_t count = 0, sum = 0, sq = 0;
    for (int k = 0; k < consumers; ++k) {
        auto r = results.get(30s);
        count += r[0];
        sum += r[1];
        sq ^= r[2];
    }
    for (auto& c : cs) c->join();
    for (auto& c : cs) REQUIRE(c->exitcode() == 0);
    const std::uint64_t n = producers * per;
    std::uint64_t expect_sq = 0;
    for (std::uint64_t v = 1; v <= n; ++v) expect_sq ^= v * v;
    REQUIRE(count == n);
    REQUIRE(sum == n * (n + 1) / 2);
    REQUIRE(sq == expect_sq);
    REQUIRE(q.qsize() == 0);
}

TEST_CASE("SimpleQueue: get, put, empty across processes") {
    mp::SimpleQueue<std::string> q;
    REQUIRE(q.empty());
    mp::Process p([](mp::SimpleQueue<std::string> q) {
        for (int i = 0; i < 100; ++i) q.put(std::to_string(i));
    }, q);
    p.start();
    for (int i = 0; i < 100; ++i) REQUIRE(q.get() == std::to_string(i));
    p.join();
    REQUIRE(q.empty());
}

// ---- JoinableQueue ----------------------------------------------------------------------------

TEST_CASE("JoinableQueue: join() wakes when task_done() brings the count to zero") {
    mp::JoinableQueue<int> q;
    for (int i = 0; i < 10; ++i) q.put(i);
    REQUIRE_FALSE(q.join(10ms));
    REQUIRE_FALSE(q.join(0.01));
    mp::Process p(
        [](mp::JoinableQueue<int> q) {
            for (int i = 0; i < 10; ++i) {
                q.get();
                q.task_done();
            }
        },
        q);
    p.start();
    q.join();
    REQUIRE(q.empty());
    REQUIRE(q.join(0s));
    p.join();
    REQUIRE(p.exitcode() == 0);
}

TEST_CASE("JoinableQueue: join() sleeping in another process wakes on the last task_done()") {
    mp::JoinableQueue<int> q;
    mp::Queue<int> done;
    q.put(1);
    q.put(2);
    mp::Process p([](mp::JoinableQueue<int> q, mp::Queue<int> done) { q.join(); done.put(1); },
                  q, done);
    p.start();
    REQUIRE(sleeping(*p.pid()));
    REQUIRE(q.get() == 1);
    q.task_done();
    REQUIRE_THROWS_AS(done.get(20ms), mp::Empty);
    REQUIRE(q.get() == 2);
    q.task_done();
    REQUIRE(done.get(10s) == 1);
    p.join();
}

TEST_CASE("JoinableQueue: one task_done() too many throws ValueError") {
    mp::JoinableQueue<int> q;
    REQUIRE_THROWS_AS(q.task_done(), mp::ValueError);
    q.put(1);
    q.get();
    q.task_done();
    REQUIRE_THROWS_WITH(q.task_done(), "task_done() called too many times");
    REQUIRE(q.join(0s));
}

// ---- Python's feeder-thread traps -------------------------------------------------------------

TEST_CASE("Trap 1: a child that put 10,000 items is joined before the parent gets them") {
    mp::Queue<std::string> q;
    mp::Process p([](mp::Queue<std::string> q) {
        for (int i = 0; i < 10'000; ++i) q.put(fmt::format("item {} {}", i, std::string(64, 'x')));
    }, q);
    p.start();
    REQUIRE(p.join(30s));  // Python deadlocks here (the feeder cannot flush into a full pipe)
    REQUIRE(p.exitcode() == 0);
    REQUIRE(q.qsize() == 10'000);
    for (int i = 0; i < 10'000; ++i)
        REQUIRE(q.get_nowait() == fmt::format("item {} {}", i, std::string(64, 'x')));
}

TEST_CASE("Trap 2: a child that puts and exits at once loses nothing") {
    mp::Queue<int> q;
    for (int round = 0; round < 3; ++round) {
        mp::Process p([](mp::Queue<int> q) {
            for (int i = 0; i < 1000; ++i) q.put(i);
            std::_Exit(0);  // no flush of anything, no destructors
        }, q);
        p.start();
        p.join();
        REQUIRE(p.exitcode() == 0);
        REQUIRE(q.qsize() == 1000);
        for (int i = 0; i < 1000; ++i) REQUIRE(q.get_nowait() == i);
    }
}

// ---- growth -----------------------------------------------------------------------------------

TEST_CASE("Growth: 1,000,000 items put by a child before the first get") {
    mp::Queue<std::uint64_t> q;
    constexpr std::uint64_t n = 1'000'000;
    mp::Process p([](mp::Queue<std::uint64_t> q) {
        for (std::uint64_t i = 0; i < n; ++i) q.put(i * 3);
    }, q);
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
    REQUIRE(q.qsize() == n);
    std::uint64_t bad = 0;
    for (std::uint64_t i = 0; i < n; ++i)
        if (q.get_nowait() != i * 3) ++bad;
    REQUIRE(bad == 0);
    REQUIRE(q.empty());
}

TEST_CASE("Growth: a 100 MB item goes through") {
    mp::Queue<std::string> q;
    constexpr std::size_t size = 100u << 20;
    mp::Process p([](mp::Queue<std::string> q) {
        std::string big(size, '\0');
        for (std::size_t i = 0; i < size; i += 4096) big[i] = char(i / 4096);
        q.put("before");
        q.put(big);
        q.put("after");
    }, q);
    p.start();
    REQUIRE(q.get() == "before");
    std::string big = q.get();
    REQUIRE(big.size() == size);
    bool ok = true;
    for (std::size_t i = 0; i < size; i += 4096) ok = ok && big[i] == char(i / 4096);
    REQUIRE(ok);
    REQUIRE(q.get() == "after");
    p.join();
    REQUIRE(p.exitcode() == 0);
    q.put("again");
    REQUIRE(q.get() == "again");
}

TEST_CASE("ring: a big ring that empties goes back to its initial size, unless it just grew") {
    // Threshold 64 KiB; the first ring shrinks at once, the second only after 10 s.
    for (std::int64_t delay : {std::int64_t(0), std::int64_t(10'000'000'000)}) {
        shared_ring r(0, 0, 4096, 64 * 1024, delay);
        REQUIRE(ring_put(r, "small"));
        REQUIRE(ring_put(r, pattern(200'000, 'x')));
        REQUIRE(r.capacity() == 256 * 1024);
        REQUIRE(*ring_get(r) == "small");
        REQUIRE(r.capacity() == 256 * 1024);  // not empty yet
        REQUIRE(*ring_get(r) == pattern(200'000, 'x'));
        REQUIRE(r.capacity() == (delay == 0 ? 4096u : 256u * 1024));
        REQUIRE(ring_put(r, "again"));
        REQUIRE(*ring_get(r) == "again");
    }
}

TEST_CASE("Growth: an item bigger than the free space grows a bounded queue below maxsize") {
    mp::Queue<std::vector<std::uint64_t>> q(3);
    q.put(make_item(1, 10));
    q.put(make_item(2, 100'000));  // 800 KB, far beyond the initial ring
    q.put(make_item(3, 10));
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(q.put_nowait(make_item(4, 1)), mp::Full);
    for (std::uint64_t i = 1; i <= 3; ++i) {
        auto v = q.get();
        REQUIRE(item_ok(v));
        REQUIRE(v[0] == i);
    }
}

// ---- faults -----------------------------------------------------------------------------------

TEST_CASE("Faults: a producer killed in the middle of big puts leaves only whole items") {
    const auto shm_before = shm_entries();
    {
        mp::Queue<std::vector<std::uint64_t>> q(4);
        std::mt19937 rng(std::random_device{}());
        std::uint64_t expected_next = 0;
        for (int round = 0; round < 4; ++round) {
            mp::Process p(
                [](mp::Queue<std::vector<std::uint64_t>> q, std::uint64_t first) {
                    for (std::uint64_t seq = first;; ++seq) q.put(make_item(seq, 64 * 1024));
                },
                q, expected_next);
            p.start();
            // Consume a few, then kill the producer at a random moment.
            for (int i = 0; i < 3; ++i) {
                auto v = q.get(10s);
                REQUIRE(item_ok(v));
                REQUIRE(v[0] == expected_next++);
            }
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
            p.kill();
            p.join();
            REQUIRE(p.exitcode() == -SIGKILL);
            // Whatever is left is whole and in order; the queue still works.
            for (;;) {
                std::optional<std::vector<std::uint64_t>> v;
                try {
                    v = q.get_nowait();
                } catch (const mp::Empty&) {
                    break;
                }
                REQUIRE(item_ok(*v));
                REQUIRE((*v)[0] == expected_next++);
            }
            q.put(make_item(expected_next, 5));
            auto v = q.get(5s);
            REQUIRE(item_ok(v));
            REQUIRE(v[0] == expected_next++);
        }
        // How often the kill hit a put holding the lock (the rest hit it copying or sleeping).
        WARN("lock recoveries: " << mp::detail::queue_access::ring(q).recoveries() << " of 4 kills");
        // Another producer and the parent carry on normally.
        mp::Process p2([](mp::Queue<std::vector<std::uint64_t>> q) {
            for (std::uint64_t i = 0; i < 10; ++i) q.put(make_item(i, 1000));
        }, q);
        p2.start();
        for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(q.get(10s)[0] == i);
        p2.join();
        REQUIRE(p2.exitcode() == 0);
    }
    // Nothing left behind: no named segment, no descriptor.
    REQUIRE(shm_entries() == shm_before);
    REQUIRE(queue_fds() == 0);
}

TEST_CASE("Faults: a consumer killed while copying out big items does not wedge the queue") {
    mp::Queue<std::vector<std::uint64_t>> q;
    for (std::uint64_t i = 0; i < 64; ++i) q.put(make_item(i, 16 * 1024));
    mp::Queue<int> started;
    mp::Process c([](mp::Queue<std::vector<std::uint64_t>> q, mp::Queue<int> started) {
        started.put(1);
        for (;;) (void)q.get();
    }, q, started);
    c.start();
    REQUIRE(started.get(10s) == 1);
    std::this_thread::sleep_for(std::chrono::microseconds(std::random_device{}() % 2000));
    c.kill();
    c.join();
    // The rest is whole and in order.
    std::optional<std::uint64_t> last;
    while (!q.empty()) {
        auto v = q.get(5s);
        REQUIRE(item_ok(v));
        if (last) REQUIRE(v[0] == *last + 1);
        last = v[0];
    }
    q.put(make_item(7, 7));
    REQUIRE(item_ok(q.get(5s)));
}

TEST_CASE("Faults: a consumer killed while blocked in get() does not wedge the queue") {
    const auto shm_before = shm_entries();
    {
        mp::Queue<int> q;
        mp::Process c([](mp::Queue<int> q) { q.get(); }, q);
        c.start();
        REQUIRE(sleeping(*c.pid()));
        c.kill();
        c.join();
        REQUIRE(c.exitcode() == -SIGKILL);
        // A new consumer blocked in get() is woken by the next put.
        mp::Queue<int> out;
        mp::Process c2([](mp::Queue<int> q, mp::Queue<int> out) { out.put(q.get() + 1); }, q, out);
        c2.start();
        REQUIRE(sleeping(*c2.pid()));
        q.put(41);
        REQUIRE(out.get(10s) == 42);
        c2.join();
        q.put(1);
        REQUIRE(q.get(1s) == 1);
        REQUIRE(q.qsize() == 0);
    }
    REQUIRE(shm_entries() == shm_before);
    REQUIRE(queue_fds() == 0);
}

TEST_CASE("Faults: a producer killed while blocked on a full queue does not wedge it") {
    mp::Queue<int> q(1);
    q.put(0);
    mp::Process p([](mp::Queue<int> q) { q.put(1); }, q);
    p.start();
    REQUIRE(sleeping(*p.pid()));
    p.kill();
    p.join();
    REQUIRE(q.get(1s) == 0);
    q.put(2);
    REQUIRE(q.full());
    REQUIRE(q.get(1s) == 2);
}

// [fork]: the child gets a raw ring, which only fork can hand over.
TEST_CASE("Faults: the lock of a process killed while holding it is taken over", "[fork]") {
    // A child takes the queue's lock through a put whose fill never returns.
    auto ring = std::make_shared<shared_ring>();
    for (int i = 0; i < 3; ++i) REQUIRE(ring_put(*ring, pattern(100 + i, 'q')));
    mp::Queue<int> ready;
    mp::Process p(
        [](std::shared_ptr<shared_ring> r, mp::Queue<int> ready) {
            r->put(
                8,
                [&](const ring_span&) {
                    ready.put(1);
                    for (;;) ::pause();
                },
                forever);
        },
        ring, ready);
    p.start_method("fork");  // a raw ring is no handle that can travel
    p.start();
    REQUIRE(ready.get(10s) == 1);
    p.kill();
    p.join();
    REQUIRE(ring_put(*ring, "after"));  // waits for the dead owner, recounts the records
    REQUIRE(ring->recoveries() == 1);
    REQUIRE(ring->qsize() == 4);
    for (int i = 0; i < 3; ++i) REQUIRE(*ring_get(*ring) == pattern(100 + i, 'q'));
    REQUIRE(*ring_get(*ring) == "after");
}
