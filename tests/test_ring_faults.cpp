// Crash consistency of the ring under the queues: a process killed between any two stores of a
// put, a get or a growth (MP_RING_FAULT_POINT, defined here to SIGKILL the process at the named
// point) leaves a ring that the next user repairs: every committed item once, in order, whole,
// nothing uncommitted. The fault points are compiled into this program only; catch_main.cpp
// instantiates nothing of the ring.
#include <csignal>
#include <cstring>

namespace test {
inline const char* fault_point = nullptr;  // set in the child that is to die
}
#define MP_RING_FAULT_POINT(name)                                               \
    ((test::fault_point && std::strcmp(test::fault_point, #name) == 0)          \
         ? static_cast<void>(::raise(SIGKILL))                                  \
         : static_cast<void>(0))

#include <multiprocessing.hpp>
#include <multiprocessing/detail/shared_ring.hpp>

#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "ring_helpers.hpp"

namespace mp = multiprocessing;
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
template <class Op, class WarmUp>
void die_at(const char* point, std::shared_ptr<shared_ring> ring, Op op, WarmUp warm_up) {
    mp::Process p(
        [](std::shared_ptr<shared_ring> r, std::string at, Op op, WarmUp warm_up) {
            warm_up(*r);
            test::fault_point = at.c_str();
            op(*r);
        },
        ring, std::string(point), op, warm_up);
    p.start_method("fork");  // a raw ring is no handle that can travel
    p.start();
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
                while (next < expect.size()) REQUIRE(ring_get(*ring, 0) == expect[next++]);
            REQUIRE(ring_put(*ring, "after"));  // takes the producers' lock over, repairs
            REQUIRE(ring->recoveries() == 1);
            expect.push_back("after");
            while (next < expect.size()) REQUIRE(ring_get(*ring, 0) == expect[next++]);
            REQUIRE(ring->empty());
            REQUIRE_FALSE(ring_get(*ring, 0));
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
            if (put_first) REQUIRE(ring_put(*ring, "after", 0));
            for (std::size_t i = gone; i < items.size(); ++i)
                REQUIRE(ring_get(*ring) == items[i]);  // the first takes the lock over
            REQUIRE(ring->recoveries() == 1);
            if (!put_first) REQUIRE(ring_put(*ring, "after"));
            REQUIRE(ring_get(*ring, 0) == "after");
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
