// Crash consistency of the ring under the queues: a process killed between any two stores of a
// put, a get or a growth (MP_RING_FAULT_POINT, defined here to SIGKILL the process at the named
// point) leaves a ring that the next user repairs: every committed item once, in order, whole,
// nothing uncommitted. The fault points are compiled into this program only; catch_main.cpp
// instantiates nothing of the ring.
#include <csignal>
#include <cstring>

namespace test {
inline const char* fault_point = nullptr;  // set in the child that is to die
// Or: run `fault_hook` at the point named `hook_point` (to pause there, widen a window, tell
// another process), in the process that set them.
inline const char* hook_point = nullptr;
inline void (*fault_hook)(const char* point) = nullptr;
inline void at_fault_point(const char* name) noexcept {
    if (fault_point && std::strcmp(fault_point, name) == 0) ::raise(SIGKILL);
    if (fault_hook && (!hook_point || std::strcmp(hook_point, name) == 0)) fault_hook(name);
}
}  // namespace test
#define MP_RING_FAULT_POINT(name) test::at_fault_point(#name)

#include <multiprocessing.hpp>
#include <multiprocessing/detail/shared_ring.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "ring_helpers.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;
using mp::detail::deadline_after;
using mp::detail::shared_ring;
constexpr auto lease_after = mp::detail::lease_lock::lease_after;
using test::pattern;
using test::ring_get;
using test::ring_put;

namespace {

// A ring of 4096 bytes whose head and tail stand at 3008, so that the next records wrap
// around the end, holding `items`.
std::shared_ptr<shared_ring> wrapped_ring(const std::vector<std::string>& items) {
    auto r = std::make_shared<shared_ring>(0, 0, 4096);
    REQUIRE(ring_put(*r, pattern(3000, 'l')));
    REQUIRE(ring_get(*r) == pattern(3000, 'l'));
    for (auto& s : items) REQUIRE(ring_put(*r, s));
    return r;
}

// Runs `op` on the ring in a forked child that dies at `point`; `warm_up` first (an operation
// of the same side, which leaves the child holding that side's lock as a lease).
// Runs `f` in a forked child (a raw ring is no handle that can travel).
template <class F>
mp::Process forked(F f) {
    mp::Process p(f);
    p.start_method("fork");
    p.start();
    return p;
}

template <class Op, class WarmUp>
void die_at(const char* point, std::shared_ptr<shared_ring> ring, Op op, WarmUp warm_up) {
    auto p = forked([ring, point, op, warm_up] {
        warm_up(*ring);
        test::fault_point = point;
        op(*ring);
    });
    REQUIRE(test::finish(p) == -SIGKILL);
}

}  // namespace

TEST_CASE("ring faults: a producer killed at any point of a put", "[fork]") {
    const std::vector<std::string> items{pattern(1500, 'a'), pattern(700, 'b')};
    for (const char* point : {"put_written", "put_committed"}) {
      for (bool leased : {false, true}) {
        for (bool get_first : {false, true}) {
            CAPTURE(point, leased, get_first);
            auto ring = wrapped_ring(items);
            die_at(
                point, ring, [](shared_ring& r) { ring_put(r, pattern(400, 'x')); },
                [leased](shared_ring& r) {
                    for (unsigned i = 0; leased && i < lease_after; ++i) ring_put(r, "w");
                });
            const bool committed = std::string(point) == "put_committed";
            std::vector<std::string> expect = items;
            if (leased) expect.insert(expect.end(), lease_after, "w");
            if (committed) expect.push_back(pattern(400, 'x'));
            REQUIRE(ring->qsize() == expect.size());
            std::size_t next = 0;
            // Consumers need not wait for the dead producer's lock.
            if (get_first)
                while (next < expect.size()) REQUIRE(ring_get(*ring, mp::detail::try_only) == expect[next++]);
            REQUIRE(ring_put(*ring, "after"));  // takes the producers' lock over, repairs
            REQUIRE(ring->recoveries() == 1);
            expect.push_back("after");
            while (next < expect.size()) REQUIRE(ring_get(*ring, mp::detail::try_only) == expect[next++]);
            REQUIRE(ring->empty());
            REQUIRE_FALSE(ring_get(*ring, mp::detail::try_only));
        }
      }
    }
}

TEST_CASE("ring faults: a consumer killed at any point of a get", "[fork]") {
    for (const char* point : {"get_taken", "get_committed"}) {
      for (bool leased : {false, true}) {
        for (bool put_first : {false, true}) {
            CAPTURE(point, leased, put_first);
            // Under a lease: the child first gets lease_after fillers.
            std::vector<std::string> items(leased ? lease_after : 0, "f");
            for (auto& s : {pattern(1500, 'a'), pattern(700, 'b'), std::string("c")})
                items.push_back(s);
            auto ring = wrapped_ring(items);
            die_at(
                point, ring, [](shared_ring& r) { ring_get(r); },
                [leased](shared_ring& r) {
                    for (unsigned i = 0; leased && i < lease_after; ++i) ring_get(r);
                });
            const std::size_t gone =
                (leased ? lease_after : 0) + (std::string(point) == "get_committed");
            REQUIRE(ring->qsize() == items.size() - gone);
            // Producers need not wait for the dead consumer's lock.
            if (put_first) REQUIRE(ring_put(*ring, "after", mp::detail::try_only));
            for (std::size_t i = gone; i < items.size(); ++i)
                REQUIRE(ring_get(*ring) == items[i]);  // the first takes the lock over
            REQUIRE(ring->recoveries() == 1);
            if (!put_first) REQUIRE(ring_put(*ring, "after"));
            REQUIRE(ring_get(*ring, mp::detail::try_only) == "after");
            REQUIRE(ring->empty());
        }
      }
    }
}

TEST_CASE("ring faults: a producer killed while it grows the ring", "[fork]") {
    // The second record wraps around the end: growth moves its second part.
    const std::vector<std::string> items{pattern(500, 'a'), pattern(1500, 'b')};
    for (const char* point : {"grow_copied", "grow_committed"}) {
        CAPTURE(point);
        auto ring = wrapped_ring(items);
        REQUIRE(ring->capacity() == 4096);
        die_at(
            point, ring, [](shared_ring& r) { ring_put(r, pattern(5000, 'x')); },
            [](shared_ring&) {});
        const bool committed = std::string(point) == "grow_committed";
        REQUIRE(ring->capacity() == (committed ? 8192u : 4096u));
        REQUIRE(ring->qsize() == items.size());
        REQUIRE(ring_put(*ring, "after"));  // both locks were held: two takeovers
        for (auto& s : items) REQUIRE(ring_get(*ring) == s);
        REQUIRE(ring->recoveries() == 2);
        REQUIRE(ring_get(*ring) == "after");
        // And it still grows.
        REQUIRE(ring_put(*ring, pattern(20000, 'y')));
        REQUIRE(ring_get(*ring) == pattern(20000, 'y'));
        REQUIRE(ring->empty());
    }
}

// lease_after put/get pairs.
void streak(shared_ring& r) {
    for (unsigned i = 0; i < lease_after; ++i) {
        ring_put(r, "s");
        ring_get(r);
    }
}

TEST_CASE("ring leases: granted after a streak, revoked by others, granted again to the last "
          "holder or once it is gone", "[fork]") {
    if (!mp::detail::posix::membarrier_register()) {
        WARN("membarrier(2) refused here: the locks are never leased");
        return;
    }
    auto ring = std::make_shared<shared_ring>();
    REQUIRE(ring_put(*ring, "a"));
    REQUIRE(ring_get(*ring) == "a");
    REQUIRE_FALSE(ring->leased(true));  // one operation is no streak
    streak(*ring);
    REQUIRE(ring->leased(true));
    REQUIRE(ring->leased(false));
    // A child takes both locks from this thread's leases; their last holder lives, so the
    // child gets none, however long its streak (only that holder may write its in_op word).
    auto child = [](std::shared_ptr<shared_ring> r, bool expect_leases) {
        test::check(ring_put(*r, "b"), "put");
        streak(*r);
        test::check(r->leased(true) == expect_leases && r->leased(false) == expect_leases,
                    "leases in the child");
    };
    mp::Process p(child, ring, false);
    p.start_method("fork");
    p.start();
    REQUIRE(test::finish(p) == 0);
    REQUIRE_FALSE(ring->leased(true));
    REQUIRE_FALSE(ring->leased(false));
    REQUIRE(ring_get(*ring));  // what the child left
    streak(*ring);
    REQUIRE(ring->leased(true));  // granted again to their last holder
    REQUIRE(ring->leased(false));
    REQUIRE(ring->recoveries() == 0);

    // Children of a ring this thread never uses: the second gets the first's leases, as the
    // first is gone.
    auto fresh = std::make_shared<shared_ring>();
    for (int i = 0; i < 2; ++i) {
        mp::Process c(child, fresh, true);
        c.start_method("fork");
        c.start();
        REQUIRE(test::finish(c) == 0);
    }
    REQUIRE(ring_get(*fresh));
    REQUIRE(ring_get(*fresh));
    REQUIRE(fresh->empty());
}

TEST_CASE("ring leases: a holder killed between operations leaves nothing to repair", "[fork]") {
    auto ring = std::make_shared<shared_ring>();
    mp::Queue<int> ready;
    mp::Process p(
        [](std::shared_ptr<shared_ring> r, mp::Queue<int> ready) {
            streak(*r);
            ring_put(*r, "y");
            test::check(r->leased(true) == mp::detail::posix::membarrier_register(), "leased");
            ready.put(1);
            for (;;) ::pause();
        },
        ring, ready);
    p.start_method("fork");
    p.start();
    REQUIRE(ready.get(std::chrono::seconds(10)) == 1);
    p.kill();
    REQUIRE(test::finish(p) == -SIGKILL);
    REQUIRE(ring_put(*ring, "z"));
    REQUIRE(ring_get(*ring) == "y");
    REQUIRE(ring_get(*ring) == "z");
    REQUIRE(ring->recoveries() == 0);
    REQUIRE(ring->empty());
}

// ---- Revocations interrupted by SIGKILL ----------------------------------------------------

namespace {

// Flags that forked processes raise and wait for, in memory they all share.
struct signals {
    std::atomic<int> inside{0}, marked{0}, decided{0}, go{0};
};
signals* sig = nullptr;

std::shared_ptr<signals> make_signals() {
    void* p = ::mmap(nullptr, sizeof(signals), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    sig = ::new (p) signals;
    return {sig, [](signals* s) { ::munmap(s, sizeof(signals)); }};
}

bool leases_possible() {
    if (mp::detail::posix::membarrier_register()) return true;
    WARN("membarrier(2) refused here: the locks are never leased");
    return false;
}

// One operation on a side, with a deadline; a get yields its item, a put "put".
std::optional<std::string> op(shared_ring& r, bool producers, const std::string& item,
                              mp::detail::deadline deadline = mp::detail::forever) {
    if (producers) return ring_put(r, item, deadline) ? std::optional<std::string>("put") : std::nullopt;
    return ring_get(r, deadline);
}

// Everything left in the ring, each item within a bounded wait.
std::vector<std::string> drain(shared_ring& r) {
    std::vector<std::string> out;
    while (!r.empty()) {
        auto v = ring_get(r, deadline_after(10s));
        REQUIRE(v);
        out.push_back(*v);
    }
    return out;
}

// After a fault: a new process can put and get, and this one gets leases again.
void still_works(const std::shared_ptr<shared_ring>& ring) {
    auto user = forked([ring] {
        test::check(ring_put(*ring, "n", deadline_after(10s)), "put in a new process");
        test::check(ring_get(*ring, deadline_after(10s)) == "n", "get in a new process");
    });
    REQUIRE(test::finish(user) == 0);
    streak(*ring);
    CHECK(ring->leased(true));
    CHECK(ring->leased(false));
    REQUIRE(ring->empty());
}

}  // namespace

TEST_CASE("ring leases: a revoker killed mid-revocation wedges nobody, its holder included",
          "[fork]") {
    if (!leases_possible()) return;
    for (const char* point : {"revoke_marked", "revoke_waited"}) {
        for (bool producers : {true, false}) {
            CAPTURE(point, producers);
            auto ring = std::make_shared<shared_ring>();
            REQUIRE(ring_put(*ring, "a"));
            streak(*ring);  // put/get pairs: the first get takes "a", one "s" stays
            REQUIRE(ring->leased(producers));
            auto revoker = forked([ring, point, producers] {
                test::fault_point = point;
                op(*ring, producers, "r");
            });
            REQUIRE(test::finish(revoker) == -SIGKILL);
            // The holder takes its lock back (after one liveness slice), within its timeout.
            REQUIRE(ring_put(*ring, "b", deadline_after(10s)));
            REQUIRE(drain(*ring) == std::vector<std::string>{"s", "b"});
            REQUIRE(ring->recoveries() == 0);  // nobody died inside
            still_works(ring);
        }
    }
}

TEST_CASE("ring leases: while a holder is inside, a dead revoker's successor waits for it, "
          "and its timeout holds", "[fork]") {
    if (!leases_possible()) return;
    for (bool producers : {true, false}) {
        CAPTURE(producers);
        auto flags = make_signals();
        auto ring = std::make_shared<shared_ring>();
        auto holder = forked([ring, producers] {
            streak(*ring);
            test::check(ring->leased(true) && ring->leased(false), "leases in the holder");
            if (!producers) ring_put(*ring, "a");
            test::hook_point = producers ? "put_written" : "get_taken";
            test::fault_hook = [](const char*) {
                test::publish(sig->inside, 1);
                test::wait_published(sig->go, 10000ms);
            };
            test::check(op(*ring, producers, "h") == (producers ? "put" : "a"), "holder's op");
        });
        REQUIRE(test::wait_published(sig->inside, 10000ms) == 1);
        auto revoker = forked([ring, producers] {
            test::fault_point = "revoke_marked";
            op(*ring, producers, "r");
        });
        REQUIRE(test::finish(revoker) == -SIGKILL);
        // This thread takes the dead revoker's place, and gives up at its deadline: the holder
        // is still inside.
        REQUIRE_FALSE(op(*ring, producers, "p", deadline_after(300ms)));
        test::publish(sig->go, 1);
        REQUIRE(test::finish(holder) == 0);
        // The revocation it handed back is finished by the next one.
        REQUIRE(ring_put(*ring, "b", deadline_after(10s)));
        REQUIRE(drain(*ring) ==
                (producers ? std::vector<std::string>{"h", "b"} : std::vector<std::string>{"b"}));
        REQUIRE(ring->recoveries() == 0);
        still_works(ring);
    }
}

namespace {

// A child that takes both leases, puts "1", "2", "3", and then runs one operation of a side
// (a put of "x", or a get of "1") that dies right after its commit: the fault point, or the
// hook that `arm` sets.
template <class Arm>
mp::Process holder_dying_after_commit(const std::shared_ptr<shared_ring>& ring, bool producers,
                                      Arm arm) {
    return forked([ring, producers, arm] {
        streak(*ring);
        test::check(ring->leased(true) && ring->leased(false), "leases in the holder");
        for (const char* s : {"1", "2", "3"}) ring_put(*ring, s);
        arm(producers ? "put_committed" : "get_committed");
        op(*ring, producers, "x");
    });
}

// What the ring holds after that holder and a revoker's operation ("r", or a get of "2").
std::vector<std::string> expected_after(bool producers) {
    if (producers) return {"1", "2", "3", "x", "r"};
    return {"3"};
}

}  // namespace

TEST_CASE("ring leases: a holder killed inside, then its revoker still finishing: nobody "
          "else enters, and the revoker repairs", "[fork]") {
    if (!leases_possible()) return;
    for (bool producers : {true, false}) {
        CAPTURE(producers);
        auto flags = make_signals();
        auto ring = std::make_shared<shared_ring>();
        auto holder = holder_dying_after_commit(ring, producers,
                                                [](const char* at) { test::fault_point = at; });
        REQUIRE(test::finish(holder) == -SIGKILL);
        auto revoker = forked([ring, producers] {
            test::hook_point = "revoke_waited";
            test::fault_hook = [](const char*) {
                test::publish(sig->decided, 1);
                test::wait_published(sig->go, 10000ms);
            };
            test::check(op(*ring, producers, "r", deadline_after(10s)) ==
                            (producers ? "put" : "2"),
                        "the revoker's operation (no item twice)");
        });
        REQUIRE(test::wait_published(sig->decided, 10000ms) == 1);
        // The revoker found the holder dead inside and owns the lock: a third party waits.
        REQUIRE_FALSE(op(*ring, producers, "p", deadline_after(300ms)));
        test::publish(sig->go, 1);
        REQUIRE(test::finish(revoker) == 0);
        REQUIRE(ring->recoveries() == 1);
        REQUIRE(drain(*ring) == expected_after(producers));
        still_works(ring);
    }
}

TEST_CASE("ring leases: a holder killed right after a commit while a revocation is under way",
          "[fork]") {
    if (!leases_possible()) return;
    for (bool producers : {true, false}) {
        CAPTURE(producers);
        auto flags = make_signals();
        auto ring = std::make_shared<shared_ring>();
        auto holder = holder_dying_after_commit(ring, producers, [](const char* at) {
            test::hook_point = at;
            test::fault_hook = [](const char*) {
                test::publish(sig->inside, 1);
                test::wait_published(sig->marked, 10000ms);
                ::raise(SIGKILL);
            };
        });
        REQUIRE(test::wait_published(sig->inside, 10000ms) == 1);
        auto revoker = forked([ring, producers] {
            test::hook_point = "revoke_marked";
            test::fault_hook = [](const char*) { test::publish(sig->marked, 1); };
            test::check(op(*ring, producers, "r", deadline_after(10s)) ==
                            (producers ? "put" : "2"),
                        "the revoker's operation (no item twice)");
        });
        REQUIRE(test::finish(holder) == -SIGKILL);
        REQUIRE(test::finish(revoker) == 0);
        REQUIRE(ring->recoveries() == 1);
        REQUIRE(drain(*ring) == expected_after(producers));
        still_works(ring);
    }
}

// ---- Soak: producers and consumers SIGKILLed at random ---------------------------------------

namespace soak {

constexpr int producers = 3, consumers = 3;
constexpr std::uint64_t maxsize = 16;
constexpr std::uint32_t max_gens = 256;      // processes started in one round
constexpr std::uint32_t max_seq = 1u << 14;  // items one producer puts at most
constexpr int kills = 40;

// An item: [producer generation, sequence number], then bytes that follow from both.
std::string make_item(std::uint32_t gen, std::uint32_t seq) {
    std::string s(8, '\0');
    std::memcpy(s.data(), &gen, 4);
    std::memcpy(s.data() + 4, &seq, 4);
    return s + pattern(8 + (gen * 7 + seq * 13) % 300, char(gen * 31 + seq));
}
std::uint64_t key(std::uint32_t gen, std::uint32_t seq) { return std::uint64_t(gen) * max_seq + seq; }

// What every process of a round shares.
struct board {
    std::atomic<std::uint32_t> put_count[max_gens];  // puts that returned, per producer
    std::atomic<std::uint64_t> taking[max_gens];     // key + 1 of what a consumer is taking
    std::atomic<std::uint64_t> seen[max_gens * max_seq / 64];  // items got, as bits
    std::atomic<int> failed;
    char why[128];
    // A revocation under way: its revoker's generation + 1, and a futex word bumped as one starts.
    std::atomic<std::uint32_t> revoker;
    std::atomic<std::uint32_t> revocations;
    std::atomic<std::uint32_t> got;  // items got, a futex word
};
board* b = nullptr;
std::uint32_t my_gen = 0;  // in each child

void fail(const char* why) {
    if (b->failed.exchange(1) == 0) std::strncpy(b->why, why, sizeof b->why - 1);
}

// Keeps each fault point's window open a little, so that kills land inside them. A revocation,
// rare (a lease needs a streak of one process's operations), is held open longer and announced,
// so that the killer can aim at it.
void widen(const char* point) noexcept {
    const bool revoking = std::strncmp(point, "revoke", 6) == 0;
    if (revoking) {
        b->revoker.store(my_gen + 1);
        b->revocations.fetch_add(1);
        mp::detail::posix::futex_wake_all(&b->revocations);
    }
    const std::int64_t until = mp::detail::posix::monotonic_ns() + (revoking ? 500'000 : 20'000);
    while (mp::detail::posix::monotonic_ns() < until) mp::detail::posix::cpu_relax();
    std::uint32_t mine = my_gen + 1;
    if (revoking) b->revoker.compare_exchange_strong(mine, 0);
}

void produce(shared_ring& r, std::uint32_t gen) {
    for (std::uint32_t seq = 0; seq < max_seq; ++seq) {
        if (!ring_put(r, make_item(gen, seq), deadline_after(10s))) return fail("a put hung");
        b->put_count[gen].store(seq + 1);
    }
}

// Takes one item as consumer `gen`; false when none came in time.
bool consume(shared_ring& r, std::uint32_t gen, mp::detail::deadline deadline) {
    std::string item;
    std::uint32_t g = 0, q = 0;
    bool got = false;
    try {
        got = r.get(
            [&](const mp::detail::ring_span& s) {
                item.resize(s.size());
                s.read(0, item.data(), item.size());
                if (item.size() >= 8) {
                    std::memcpy(&g, item.data(), 4);
                    std::memcpy(&q, item.data() + 4, 4);
                    b->taking[gen].store(key(g, q) + 1);
                }
            },
            deadline);
    } catch (const std::exception& e) {
        fail(e.what());  // "queue memory is corrupted"
        return false;
    }
    if (!got) return false;
    if (item.size() < 8 || g >= max_gens || q >= max_seq || item != make_item(g, q)) {
        fail("an item came back torn");
        return false;
    }
    const std::uint64_t k = key(g, q);
    if (b->seen[k / 64].fetch_or(std::uint64_t(1) << (k % 64)) & (std::uint64_t(1) << (k % 64)))
        fail("an item came twice");
    b->taking[gen].store(0);
    b->got.fetch_add(1);
    mp::detail::posix::futex_wake_all(&b->got);
    return true;
}

}  // namespace soak

TEST_CASE("ring soak: 3 producers and 3 consumers on a bounded queue, SIGKILLed every ~20 ms",
          "[fork]") {
    using namespace soak;
    // Each round failed about every other time before the revocation fixes (the stall check
    // alone, every round): 10 rounds miss such a defect once in 1024 runs. The sanitizer builds,
    // several times slower, run 3.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    constexpr int rounds = 3;
#else
    constexpr int rounds = 10;
#endif
    void* mem = ::mmap(nullptr, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
    REQUIRE(mem != MAP_FAILED);
    std::shared_ptr<void> unmap(mem, [](void* p) { ::munmap(p, sizeof(board)); });
    std::mt19937 rng(12345);
    for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        std::memset(mem, 0, sizeof(board));
        b = static_cast<board*>(mem);
        auto ring = std::make_shared<shared_ring>(maxsize);
        std::uint32_t gens = 0;
        std::vector<bool> is_producer;
        auto launch = [&] (bool producer) {
            const std::uint32_t gen = gens++;
            is_producer.push_back(producer);
            return forked([ring, gen, producer] {
                my_gen = gen;
                test::fault_hook = widen;
                if (producer) produce(*ring, gen);
                else
                    while (!b->failed.load())
                        if (!consume(*ring, gen, deadline_after(10s))) break;
            });
        };
        std::vector<mp::Process> ps;
        struct kill_all {  // when an assertion fails half-way
            std::vector<mp::Process>& ps;
            ~kill_all() {
                for (auto& p : ps)
                    if (p.is_alive()) p.kill();
            }
        } guard{ps};
        std::vector<std::uint32_t> gen_of;  // of each process in ps
        for (int i = 0; i < producers + consumers; ++i) {
            gen_of.push_back(gens);
            ps.push_back(launch(i < producers));
        }
        for (int k = 0; k < kills && !b->failed.load(); ++k) {
            // Every 5 to 35 ms (sooner when a revocation starts) a process dies: every other
            // time the revoker, if one is at work, else one at random.
            const std::uint32_t seen = b->revocations.load();
            mp::detail::posix::futex_wait(&b->revocations, seen,
                                          deadline_after(std::chrono::milliseconds(5 + rng() % 30)));
            std::size_t v = rng() % ps.size();
            const std::uint32_t revoker = b->revoker.load();
            if (revoker && rng() % 2)
                v = std::size_t(std::find(gen_of.begin(), gen_of.end(), revoker - 1) - gen_of.begin());
            if (v >= ps.size()) v = rng() % ps.size();  // that revoker is gone already
            ps[v].kill();
            const int code = test::finish(ps[v]);
            INFO(b->why);
            REQUIRE((code == -SIGKILL || code == 0));
            gen_of[v] = gens;
            ps[v] = launch(v < std::size_t(producers));
            REQUIRE(gens < max_gens);
            // The queue keeps moving: more items than it holds go through within 10 s.
            const std::uint32_t before = b->got.load();
            const auto limit = deadline_after(10s);
            std::uint32_t now;
            while ((now = b->got.load()) - before <= maxsize && !b->failed.load() &&
                   mp::detail::remaining_ns(limit) > 0)
                mp::detail::posix::futex_wait(&b->got, now, limit);
            if (!b->failed.load()) REQUIRE(b->got.load() - before > maxsize);
        }
        for (auto& p : ps) {
            p.kill();
            REQUIRE((test::finish(p) == -SIGKILL || p.exitcode() == 0));
        }
        // This process drains what is left, as one more consumer.
        const std::uint32_t me = gens++;
        while (!ring->empty())
            if (!consume(*ring, me, deadline_after(10s))) break;
        INFO(b->why);
        REQUIRE(b->failed.load() == 0);
        REQUIRE(ring->empty());
        // Nothing lost: every put that returned was got, or was being taken by a consumer that
        // was killed (whose get may or may not have committed).
        std::vector<std::uint64_t> taking;
        for (std::uint32_t g = 0; g < gens; ++g)
            if (b->taking[g].load()) taking.push_back(b->taking[g].load() - 1);
        std::uint64_t puts = 0;
        for (std::uint32_t g = 0; g < gens; ++g) {
            if (!is_producer[g]) continue;
            puts += b->put_count[g].load();
            for (std::uint32_t q = 0; q < b->put_count[g].load(); ++q) {
                const std::uint64_t k = key(g, q);
                const bool seen = b->seen[k / 64].load() & (std::uint64_t(1) << (k % 64));
                if (!seen && std::find(taking.begin(), taking.end(), k) == taking.end())
                    FAIL("item " << q << " of producer " << g << " was lost");
            }
        }
        CHECK(puts > 0);
        // And the queue still works, for this process and a new one.
        REQUIRE(ring_put(*ring, "after", deadline_after(10s)));
        REQUIRE(ring_get(*ring, deadline_after(10s)) == "after");
        still_works(ring);
    }
}
