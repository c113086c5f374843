// Thousands of primitives (Python: multiprocessing.heap, test _TestHeap): small objects are slots
// of shared arenas, so 100,000 Locks and Values fit under a small descriptor limit; a slot is
// reused only when no process holds it. Runs under every start method (tests/CMakeLists.txt).
#include <multiprocessing.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

namespace {

// Lowers RLIMIT_NOFILE's soft limit for the test's lifetime.
class nofile_limit {
public:
    explicit nofile_limit(rlim_t n) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        rlimit r = saved_;
        r.rlim_cur = n;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
    }
    ~nofile_limit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

private:
    rlimit saved_{};
};

std::size_t open_descriptors() {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

// How many processes hold the slot of `l` (detail/heap.hpp).
std::uint32_t holders(const mp::Lock& l) {
    const auto& s = mp::detail::lock_access::slot(l);
    REQUIRE(s.region()->arena);
    return mp::detail::heap::holders_at(*s.region(), s.offset() - s.offset() % mp::detail::heap::slot_size)
        .load();
}

const void* where(const mp::Lock& l) { return mp::detail::lock_access::slot(l).get(); }

constexpr int n_objects = 100'000;
constexpr int held_index = 4'242;

// Takes one Lock and one Value's lock, then waits to be killed.
void hold_one(std::vector<mp::Lock> locks, std::vector<mp::Value<int>> values, mp::Event held) {
    test::check(locks.size() == n_objects && values.size() == n_objects, "all objects arrived");
    locks[held_index].acquire();
    values[held_index].get_lock().acquire();
    values[held_index].value() = -1;
    held.set();
    for (;;) ::pause();
}

// Takes and releases every Lock and every Value's lock, adding 1 to each Value; counts the
// locks it took over from a dead holder.
void use_all(std::vector<mp::Lock> locks, std::vector<mp::Value<int>> values,
             mp::Value<int> took_over) {
    int dead = 0;
    for (int i = 0; i < n_objects; ++i) {
        test::check(locks[std::size_t(i)].acquire(true, 10s), "a Lock was acquired");
        dead += locks[std::size_t(i)].previous_owner_died();
        locks[std::size_t(i)].release();
        auto& v = values[std::size_t(i)];
        test::check(v.acquire(true, 10s), "a Value's lock was acquired");
        dead += v.get_lock().previous_owner_died();
        v.value() += 1;
        v.release();
    }
    took_over.value() = dead;
}

void wait_then_return(std::vector<mp::Lock> locks, mp::Event ready, mp::Event go) {
    test::check(!locks.empty(), "the Locks arrived");
    ready.set();
    test::check(go.wait(30s), "the parent said go");
}

}  // namespace

TEST_CASE("100,000 Locks and Value<int>s under ulimit -n 256, used from two children, one killed holding one") {
    nofile_limit limit(256);
    const std::size_t before = open_descriptors();
    std::vector<mp::Lock> locks(n_objects);
    std::vector<mp::Value<int>> values(n_objects);
    // 200,000 objects in 64-byte slots of 256 KiB arenas: 49 descriptors, not 200,000.
    CHECK(open_descriptors() - before <= 64);

    mp::Event held;
    auto a = test::start(hold_one, locks, values, held);
    REQUIRE(held.wait(60s));
    a.kill();
    CHECK(test::finish(a) == -SIGKILL);

    mp::Value<int> took_over(0);
    auto b = test::start(use_all, locks, values, took_over);
    CHECK(test::finish(b, 120s) == 0);
    CHECK(took_over.value() == 2);  // the Lock and the Value's lock the killed child held

    long sum = 0;
    for (auto& v : values) sum += v.value();
    CHECK(sum == n_objects - 1);  // each +1, and the held one was -1 first
    CHECK(values[held_index].value() == 0);
    CHECK_FALSE(locks[held_index].locked());
    CHECK(open_descriptors() - before <= 64);
}

TEST_CASE("a child gives its slots back when it exits or is terminated; a killed child's are never reused") {
    std::vector<mp::Lock> locks(8);
    for (auto& l : locks) CHECK(holders(l) == 1);
    mp::Event ready, go;
    // A child that holds the Locks until told to go.
    auto start_holding = [&] {
        auto p = test::start(wait_then_return, locks, ready, go);
        REQUIRE(ready.wait(30s));
        return p;
    };

    SECTION("a child that exits") {
        auto p = start_holding();
        for (auto& l : locks) CHECK(holders(l) == 2);
        go.set();
        CHECK(test::finish(p) == 0);
        for (auto& l : locks) CHECK(holders(l) == 1);
    }
    SECTION("a child terminated (as a Pool terminates its workers)") {
        auto p = start_holding();
        p.terminate();
        CHECK(test::finish(p) == -SIGTERM);  // it still dies of the signal
        for (auto& l : locks) CHECK(holders(l) == 1);
    }
    SECTION("a child killed holding them") {
        auto p = start_holding();
        p.kill();
        CHECK(test::finish(p) == -SIGKILL);
        for (auto& l : locks) CHECK(holders(l) == 2);
        std::set<const void*> kept;
        for (auto& l : locks) kept.insert(where(l));
        locks.clear();
        // Enough new Locks to wrap around every arena: none takes a slot the dead child holds.
        std::vector<mp::Lock> more(3 * mp::detail::heap::arena_slots);
        for (auto& l : more) CHECK_FALSE(kept.count(where(l)));
    }
}

TEST_CASE("creating and dropping a million Locks reuses the same slots") {
    const std::size_t arenas_before = mp::detail::heap::the().arenas.size();
    for (int i = 0; i < 1'000'000; ++i) {
        mp::Lock l;
        if (i % 4 == 0) l.acquire();  // used, then freed with its handle
    }
    CHECK(mp::detail::heap::the().arenas.size() <= arenas_before + 1);
}

TEST_CASE("a shared object's place is bounds-checked when it arrives") {
    mp::Lock lock;
    mp::detail::fd_table sent;
    std::vector<std::byte> bytes;
    {
        mp::detail::fd_table_scope scope(sent);
        bytes = mp::serialize(lock);
    }
    REQUIRE(sent.fds.size() == 1);
    REQUIRE(bytes.size() >= 8);
    CHECK(holders(lock) == 2);  // the receiver's reference, which it adopts

    auto arrive = [&](std::uint64_t offset) {
        std::vector<std::byte> forged = bytes;
        std::memcpy(forged.data() + forged.size() - 8, &offset, 8);
        mp::detail::fd_table got{sent.fds, {}, {}};
        mp::detail::fd_table_scope scope(got);
        return mp::deserialize<mp::Lock>(forged);
    };
    const auto& slot = mp::detail::lock_access::slot(lock);
    {
        mp::Lock same = arrive(slot.offset());
        CHECK(where(same) != where(lock));  // mapped again: the arena was not received before
        CHECK(holders(lock) == 2);
        same.acquire();
        CHECK(lock.locked());
        same.release();
    }
    CHECK(holders(lock) == 1);  // the adopted reference is dropped with the last handle
    CHECK_THROWS_AS(arrive(0), mp::SerializationError);                // the arena's header
    CHECK_THROWS_AS(arrive(4096ull * 64), mp::SerializationError);     // past the last slot
    CHECK_THROWS_AS(arrive(std::uint64_t(-64)), mp::SerializationError);
    CHECK_THROWS_AS(arrive(slot.offset() + 56), mp::SerializationError);  // over the count
}
