// Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier across real processes.
// Children's targets are free functions taking the handles as arguments, so every test runs
// under each start method (tests/CMakeLists.txt): under spawn and forkserver the handles travel.
#include <catch2/catch.hpp>

#include "helpers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <sched.h>
#include <unistd.h>

#include <multiprocessing/context.hpp>
#include <multiprocessing/process.hpp>
#include <multiprocessing/sharedctypes.hpp>
#include <multiprocessing/synchronize.hpp>

namespace mp = multiprocessing;
using test::check;
using test::finish;
using test::start;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void hang() {
    for (;;) ::pause();
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <class L>
concept timed_lockable = requires(L& l) {
    l.lock();
    l.unlock();
    { l.try_lock() } -> std::same_as<bool>;
    { l.try_lock_for(1ms) } -> std::same_as<bool>;
    { l.try_lock_until(Clock::now()) } -> std::same_as<bool>;
    { l.try_lock_until(std::chrono::system_clock::now()) } -> std::same_as<bool>;
};
static_assert(timed_lockable<mp::Lock>);
static_assert(timed_lockable<mp::RLock>);
static_assert(timed_lockable<mp::Semaphore>);
static_assert(timed_lockable<mp::BoundedSemaphore>);
static_assert(timed_lockable<mp::Condition>);
static_assert(timed_lockable<mp::AnyLock>);
static_assert(timed_lockable<const mp::Lock>);  // handles: const does not stop locking

// ---- the children's targets ---------------------------------------------------------------

void hold_lock_until_go(mp::Lock lock, mp::Event held, mp::Event go) {
    check(lock.acquire(true, 5.0), "acquire");
    held.set();
    check(go.wait(5.0), "go");
    lock.release();
}

void release_lock(mp::Lock lock) { lock.release(); }

void hold_lock_and_hang(mp::Lock lock, mp::Event held) {
    lock.acquire();
    held.set();
    hang();
}

void release_foreign_rlock(mp::RLock r) {
    check(!r.acquire(false), "child must not get the parent's RLock");
    try {
        r.release();
    } catch (const mp::ValueError&) {
        std::_Exit(7);
    }
}

void hold_rlock_twice_and_hang(mp::RLock r, mp::Event held) {
    r.acquire();
    r.acquire();
    held.set();
    hang();
}

void acquire_once_released(mp::Semaphore s, mp::Event waiting) {
    waiting.set();
    check(s.acquire(true, 5.0), "acquire");
}

void hold_until_leave(mp::Semaphore sem, mp::Semaphore inside, mp::Event leave) {
    check(sem.acquire(true, 5.0), "acquire");
    inside.release();
    check(leave.wait(5.0), "leave");
    sem.release();
}

void hammer(mp::Semaphore sem, mp::Lock lock, mp::Value<int> active, mp::Value<int> peak,
            mp::Value<int> entries) {
    for (int k = 0; k < 100; ++k) {
        std::scoped_lock s(sem);
        {
            std::scoped_lock g(lock);
            ++active.value();
            ++entries.value();
            peak.value() = std::max(peak.value(), active.value());
        }
        sched_yield();
        std::scoped_lock g(lock);
        --active.value();
    }
}

void bounded_in_child(mp::BoundedSemaphore b, mp::Event taken) {
    try {
        b.release();  // at its bound: the child sees the same bound
        std::_Exit(2);
    } catch (const mp::ValueError&) {
    }
    check(b.acquire(true, 5.0), "acquire");
    taken.set();
}

void wait_for_event(mp::Event e, mp::Semaphore ready) {
    ready.release();
    check(e.wait(5.0), "wait");
    check(e.is_set(), "is_set");
}

void set_event(mp::Event e) { e.set(); }

void take_rlock_and_notify(mp::RLock r, mp::Condition c, mp::Value<int> flag) {
    // Gets the lock only if the parent's wait really released both levels.
    check(r.acquire(true, 5.0), "acquire while the parent waits");
    flag.value() = 1;
    c.notify();
    r.release();
}

void wait_until_ready(mp::Condition cond, mp::Value<int> ready) {
    std::scoped_lock g(cond);
    check(cond.wait_for([&] { return ready.value() == 1; }, 5.0), "wait_for");
}

void wait_to_be_notified(mp::Condition c, mp::Semaphore entered, mp::Semaphore woken) {
    std::scoped_lock g(c);
    entered.release();  // still holding the lock: the parent cannot notify before wait()
    check(c.wait(5.0), "notified");
    woken.release();
}

void hold_condition_and_hang(mp::Condition c, mp::Event held) {
    c.acquire();
    held.set();
    hang();
}

// A Barrier's action that can travel to a spawned child: a serializable function object.
struct count_round {
    mp::Value<int> rounds;
    void operator()() const { ++rounds.value(); }
};

void barrier_party(mp::Barrier b, mp::Value<int> rounds, mp::Array<int> seen, int id) {
    for (int round = 0; round < 2; ++round) {
        int index = b.wait(5.0);
        check(rounds.value() >= round + 1, "action ran before release");
        seen[std::size_t(round * 3 + id)] = index;
    }
}

void barrier_wait(mp::Barrier b) { b.wait(5.0); }

void barrier_wait_or_exit_5(mp::Barrier b) {
    try {
        b.wait(5.0);
    } catch (const mp::BrokenBarrierError&) {
        std::_Exit(5);
    }
}

void barrier_wait_reporting(mp::Barrier b) {
    try {
        b.wait(5.0);
    } catch (const mp::BrokenBarrierError&) {
        std::_Exit(3);
    } catch (const std::runtime_error&) {
        std::_Exit(2);
    }
}

void try_any_lock(mp::AnyLock any, mp::Lock same) {
    check(!any.try_lock(), "the parent holds it");
    check(!same.try_lock(), "the same lock");
}

}  // namespace

// ---- Lock ---------------------------------------------------------------------------------

TEST_CASE("Lock: acquire, try, timeouts and release errors") {
    mp::Lock lock;
    REQUIRE(lock.acquire());
    REQUIRE_FALSE(lock.acquire(false));           // not re-entrant, and block=false never blocks
    REQUIRE_FALSE(lock.acquire(false, 5.0));      // Python ignores the timeout when block=false
    auto t0 = Clock::now();
    REQUIRE_FALSE(lock.acquire(true, 0.05));
    REQUIRE(seconds_since(t0) >= 0.045);
    t0 = Clock::now();
    REQUIRE_FALSE(lock.acquire(30ms));
    REQUIRE(seconds_since(t0) >= 0.025);
    REQUIRE_FALSE(lock.try_lock_until(Clock::now() + 10ms));
    REQUIRE_FALSE(lock.acquire(true, -1.0));      // negative: a try, as in Python
    lock.release();
    REQUIRE_THROWS_AS(lock.release(), mp::ValueError);
    REQUIRE(lock.acquire(true, std::nullopt));    // timeout=None blocks (here: free)
    lock.release();
    REQUIRE_FALSE(lock.previous_owner_died());
}

TEST_CASE("Lock: excludes another process until released") {
    mp::Lock lock;
    mp::Event held, go;
    auto p = start(hold_lock_until_go, lock, held, go);
    REQUIRE(held.wait(5.0));
    REQUIRE_FALSE(lock.acquire(false));
    REQUIRE_FALSE(lock.acquire(true, 0.05));
    go.set();
    REQUIRE(lock.acquire(true, 5.0));  // woken by the release, well before the timeout
    REQUIRE_FALSE(lock.previous_owner_died());
    lock.release();
    REQUIRE(finish(p) == 0);
}

TEST_CASE("Lock: another process may release it, as in Python") {
    mp::Lock lock;
    lock.acquire();
    auto p = start(release_lock, lock);
    REQUIRE(finish(p) == 0);
    REQUIRE(lock.acquire(false));
    lock.release();
}

TEST_CASE("Lock: a holder killed with SIGKILL does not deadlock the next acquirer") {
    mp::Lock lock;
    mp::Event held;
    auto p = start(hold_lock_and_hang, lock, held);
    REQUIRE(held.wait(5.0));
    REQUIRE_FALSE(lock.acquire(false));
    p.kill();
    auto t0 = Clock::now();
    REQUIRE(lock.acquire(true, 3.0));  // the dead holder is still an unreaped zombie here
    REQUIRE(seconds_since(t0) < 1.0);
    REQUIRE(lock.previous_owner_died());
    lock.release();
    REQUIRE_FALSE(lock.previous_owner_died());
    REQUIRE(finish(p) == -SIGKILL);
    REQUIRE(lock.acquire(false));
    REQUIRE_FALSE(lock.previous_owner_died());
    lock.release();
}

TEST_CASE("Lock: a non-blocking acquire also recovers a lock whose owner is dead") {
    mp::Lock lock;
    mp::Event held;
    auto p = start(hold_lock_and_hang, lock, held);
    REQUIRE(held.wait(5.0));
    p.kill();
    REQUIRE(finish(p) == -SIGKILL);
    REQUIRE(lock.acquire(false));
    REQUIRE(lock.previous_owner_died());
    lock.release();
}

TEST_CASE("Lock: threads of one process are excluded too") {
    mp::Lock lock;
    long counter = 0;
    auto work = [&] {
        for (int i = 0; i < 20000; ++i) {
            std::scoped_lock g(lock);
            ++counter;
        }
    };
    std::thread a(work), b(work);
    a.join();
    b.join();
    REQUIRE(counter == 40000);
}

// ---- RLock --------------------------------------------------------------------------------

TEST_CASE("RLock: re-entrant for its owner, released level by level") {
    mp::RLock r;
    REQUIRE(r.acquire());
    REQUIRE(r.acquire(false));
    REQUIRE(r.acquire(true, 0.01));
    r.release();
    r.release();
    std::atomic<bool> other_got{true};
    std::thread([&] { other_got = r.acquire(false); }).join();
    REQUIRE_FALSE(other_got);  // still held once
    r.release();
    REQUIRE_THROWS_AS(r.release(), mp::ValueError);
    std::thread([&] {
        other_got = r.acquire(false);
        r.release();
    }).join();
    REQUIRE(other_got);
}

TEST_CASE("RLock: released by a thread or process that does not own it throws") {
    mp::RLock r;
    r.acquire();
    bool threw = false;
    std::thread([&] {
        try {
            r.release();
        } catch (const mp::ValueError&) {
            threw = true;
        }
    }).join();
    REQUIRE(threw);
    auto p = start(release_foreign_rlock, r);
    REQUIRE(finish(p) == 7);
    r.release();  // still ours, at depth 1
    REQUIRE_THROWS_AS(r.release(), mp::ValueError);
}

TEST_CASE("RLock: a holder killed at depth 2 hands over a clean lock") {
    mp::RLock r;
    mp::Event held;
    auto p = start(hold_rlock_twice_and_hang, r, held);
    REQUIRE(held.wait(5.0));
    p.kill();
    auto t0 = Clock::now();
    REQUIRE(r.acquire(true, 3.0));
    REQUIRE(seconds_since(t0) < 1.0);
    REQUIRE(r.previous_owner_died());
    r.release();  // depth 1: the dead owner's levels are gone
    REQUIRE_FALSE(r.previous_owner_died());
    std::atomic<bool> other_got{false};
    std::thread([&] {
        other_got = r.acquire(false);
        if (other_got) r.release();
    }).join();
    REQUIRE(other_got);
    REQUIRE(finish(p) == -SIGKILL);
}

// ---- Semaphore ----------------------------------------------------------------------------

TEST_CASE("Semaphore: counts, timeouts and bad values") {
    mp::Semaphore s(2);
    REQUIRE(s.get_value() == 2);
    REQUIRE(s.acquire());
    REQUIRE(s.acquire(false));
    REQUIRE(s.get_value() == 0);
    REQUIRE_FALSE(s.acquire(false));
    auto t0 = Clock::now();
    REQUIRE_FALSE(s.acquire(true, 0.05));
    REQUIRE(seconds_since(t0) >= 0.045);
    s.release();
    s.release();
    s.release();  // an unbounded semaphore may go above its initial value
    REQUIRE(s.get_value() == 3);
    REQUIRE_THROWS_AS(mp::Semaphore(-1), mp::ValueError);
    mp::Semaphore zero(0);
    REQUIRE_FALSE(zero.try_lock());
}

TEST_CASE("BoundedSemaphore: release above the initial value throws") {
    mp::BoundedSemaphore b(2);
    REQUIRE_THROWS_AS(b.release(), mp::ValueError);
    b.acquire();
    b.release();
    REQUIRE(b.get_value() == 2);
    REQUIRE_THROWS_AS(b.release(), mp::ValueError);
    REQUIRE(b.get_value() == 2);
    mp::Semaphore& as_base = b;  // a BoundedSemaphore is a Semaphore, as in Python
    REQUIRE_THROWS_AS(as_base.release(), mp::ValueError);

    // A child gets the same semaphore, bound included.
    mp::Event taken;
    auto p = start(bounded_in_child, b, taken);
    REQUIRE(taken.wait(5.0));
    REQUIRE(finish(p) == 0);
    REQUIRE(b.get_value() == 1);
    b.release();
    REQUIRE_THROWS_AS(b.release(), mp::ValueError);
}

TEST_CASE("Semaphore: a release in one process wakes an acquire in another") {
    mp::Semaphore s(0);
    mp::Event waiting;
    auto p = start(acquire_once_released, s, waiting);
    REQUIRE(waiting.wait(5.0));
    s.release();
    REQUIRE(finish(p) == 0);
    REQUIRE(s.get_value() == 0);
}

TEST_CASE("Semaphore(2) admits two processes at once, never three") {
    mp::Semaphore sem(2);
    // Deterministic: two holders at the same time, and a third cannot get in.
    mp::Semaphore inside(0);
    mp::Event leave;
    std::vector<mp::Process> holders;
    for (int i = 0; i < 2; ++i)
        holders.push_back(start(hold_until_leave, sem, inside, leave));
    REQUIRE(inside.acquire(true, 5.0));
    REQUIRE(inside.acquire(true, 5.0));
    REQUIRE_FALSE(sem.acquire(true, 0.05));
    leave.set();
    for (auto& p : holders) REQUIRE(finish(p) == 0);

    // Under load: five processes hammer it; the peak inside is at most two.
    mp::Lock lock;
    mp::Value<int> active(0, lock), peak(0, lock), entries(0, lock);
    std::vector<mp::Process> ps;
    for (int i = 0; i < 5; ++i)
        ps.push_back(start(hammer, sem, lock, active, peak, entries));
    for (auto& p : ps) REQUIRE(finish(p) == 0);
    REQUIRE(entries.value() == 500);
    REQUIRE(active.value() == 0);
    REQUIRE(peak.value() >= 1);
    REQUIRE(peak.value() <= 2);
    REQUIRE(sem.get_value() == 2);
}

// ---- Event --------------------------------------------------------------------------------

TEST_CASE("Event: set, clear, and wait with and without timeout") {
    mp::Event e;
    REQUIRE_FALSE(e.is_set());
    auto t0 = Clock::now();
    REQUIRE_FALSE(e.wait(0.05));
    REQUIRE(seconds_since(t0) >= 0.045);
    REQUIRE_FALSE(e.wait(20ms));
    REQUIRE_FALSE(e.wait(0));
    e.set();
    e.set();
    REQUIRE(e.is_set());
    REQUIRE(e.wait());
    REQUIRE(e.wait(0));
    e.clear();
    REQUIRE_FALSE(e.is_set());
    REQUIRE_FALSE(e.wait(0.01));
}

TEST_CASE("Event: set() in the parent wakes every waiting child") {
    mp::Event e;
    mp::Semaphore ready(0);
    std::vector<mp::Process> ps;
    for (int i = 0; i < 3; ++i)
        ps.push_back(start(wait_for_event, e, ready));
    for (int i = 0; i < 3; ++i) REQUIRE(ready.acquire(true, 5.0));
    auto t0 = Clock::now();
    e.set();
    for (auto& p : ps) REQUIRE(finish(p) == 0);
    REQUIRE(seconds_since(t0) < 3.0);
}

TEST_CASE("Event: set() in a child wakes the parent") {
    mp::Event e;
    auto p = start(set_event, e);
    REQUIRE(e.wait(5.0));
    REQUIRE(finish(p) == 0);
    REQUIRE(e.is_set());
}

// ---- Condition ----------------------------------------------------------------------------

TEST_CASE("Condition: misuse without the lock throws") {
    mp::Condition c;
    REQUIRE_THROWS_AS(c.wait(0.01), mp::ValueError);
    REQUIRE_THROWS_AS(c.notify(), mp::ValueError);
    REQUIRE_THROWS_AS(c.notify_all(), mp::ValueError);
    REQUIRE_THROWS_AS(c.release(), mp::ValueError);
    mp::Lock l;
    mp::Condition cl(l);
    REQUIRE_THROWS_AS(cl.wait(0.01), mp::ValueError);
}

TEST_CASE("Condition: wait times out with the lock taken back, at its depth") {
    mp::RLock r;
    mp::Condition c(r);
    c.acquire();
    c.acquire();
    auto t0 = Clock::now();
    REQUIRE_FALSE(c.wait(0.05));
    REQUIRE(seconds_since(t0) >= 0.045);
    REQUIRE_FALSE(c.wait_for([] { return false; }, 0.03));
    REQUIRE(c.wait_for([] { return true; }, 0.0));
    c.release();
    c.release();
    REQUIRE_THROWS_AS(c.release(), mp::ValueError);
}

TEST_CASE("Condition: wait releases every level of the lock while it sleeps") {
    mp::RLock r;
    mp::Condition c(r);
    mp::Value<int> flag(0, false);
    std::scoped_lock g1(c);
    std::scoped_lock g2(c);
    auto p = start(take_rlock_and_notify, r, c, flag);
    REQUIRE(c.wait_for([&] { return flag.value() == 1; }, 5.0));
    REQUIRE(finish(p) == 0);
}

TEST_CASE("Condition: wait_for across processes (seed 14)") {
    mp::Condition cond;
    mp::Value<int> ready(0);
    auto p = start(wait_until_ready, cond, ready);
    {
        std::scoped_lock g(cond);
        ready.value() = 1;
        cond.notify_all();
    }
    REQUIRE(finish(p) == 0);
}

TEST_CASE("Condition: notify(n) wakes exactly n waiters") {
    mp::Lock lock;
    mp::Condition c(lock);
    mp::Semaphore entered(0), woken(0);
    std::vector<mp::Process> ps;
    for (int i = 0; i < 3; ++i)
        ps.push_back(start(wait_to_be_notified, c, entered, woken));
    for (int i = 0; i < 3; ++i) REQUIRE(entered.acquire(true, 5.0));
    {
        std::scoped_lock g(c);  // every child is inside wait() now
        c.notify(1);
    }
    REQUIRE(woken.acquire(true, 5.0));
    REQUIRE_FALSE(woken.acquire(true, 0.1));
    {
        std::scoped_lock g(c);
        c.notify(2);
    }
    REQUIRE(woken.acquire(true, 5.0));
    REQUIRE(woken.acquire(true, 5.0));
    for (auto& p : ps) REQUIRE(finish(p) == 0);
    std::scoped_lock g(c);
    c.notify_all();  // nobody waits: a no-op
    REQUIRE_FALSE(c.wait(0.01));
}

TEST_CASE("Condition: a holder of its lock killed with SIGKILL hands the lock over") {
    mp::Condition c;
    mp::Event held;
    auto p = start(hold_condition_and_hang, c, held);
    REQUIRE(held.wait(5.0));
    p.kill();
    std::unique_lock g(c, 3s);
    REQUIRE(g.owns_lock());
    REQUIRE(c.previous_owner_died());
    REQUIRE_FALSE(c.wait(0.01));  // usable as usual
    g.unlock();
    REQUIRE(finish(p) == -SIGKILL);
}

TEST_CASE("Condition: a waiter killed while waiting does not swallow a notify") {
    mp::Condition c;
    mp::Semaphore entered(0), woken(0);
    auto ghost = start(wait_to_be_notified, c, entered, woken);
    REQUIRE(entered.acquire(true, 5.0));
    { std::scoped_lock g(c); }  // the ghost is inside wait() now
    ghost.kill();
    REQUIRE(finish(ghost) == -SIGKILL);
    auto live = start(wait_to_be_notified, c, entered, woken);
    REQUIRE(entered.acquire(true, 5.0));
    {
        std::scoped_lock g(c);
        c.notify(1);
    }
    REQUIRE(woken.acquire(true, 5.0));
    REQUIRE(finish(live) == 0);
}

// ---- Barrier ------------------------------------------------------------------------------

TEST_CASE("Barrier: distinct indices per round, action once per round") {
    mp::Value<int> rounds(0, false);
    mp::Array<int> seen(6, false);
    mp::Barrier b(3, count_round{rounds});  // an action that can travel
    REQUIRE(b.parties() == 3);
    auto p1 = start(barrier_party, b, rounds, seen, 1);
    auto p2 = start(barrier_party, b, rounds, seen, 2);
    barrier_party(b, rounds, seen, 0);
    REQUIRE(finish(p1) == 0);
    REQUIRE(finish(p2) == 0);
    REQUIRE(rounds.value() == 2);
    for (int round = 0; round < 2; ++round) {
        std::vector<int> idx(seen.begin() + round * 3, seen.begin() + round * 3 + 3);
        std::sort(idx.begin(), idx.end());
        REQUIRE(idx == std::vector<int>{0, 1, 2});
    }
    REQUIRE_FALSE(b.broken());
    REQUIRE(b.n_waiting() == 0);
}

TEST_CASE("Barrier: a party timing out breaks it for everybody; reset repairs it") {
    mp::Barrier b(3);
    auto p = start(barrier_wait_or_exit_5, b);
    auto t0 = Clock::now();
    REQUIRE_THROWS_AS(b.wait(0.1), mp::BrokenBarrierError);
    REQUIRE(seconds_since(t0) >= 0.09);
    REQUIRE(b.broken());
    REQUIRE(b.n_waiting() == 0);
    REQUIRE(finish(p) == 5);
    REQUIRE_THROWS_AS(b.wait(5.0), mp::BrokenBarrierError);  // at once: still broken
    b.reset();
    REQUIRE_FALSE(b.broken());
    auto q1 = start(barrier_wait, b);
    auto q2 = start(barrier_wait, b);
    int index = b.wait(5.0);
    REQUIRE(index >= 0);
    REQUIRE(index <= 2);
    REQUIRE(finish(q1) == 0);
    REQUIRE(finish(q2) == 0);
}

TEST_CASE("Barrier: abort and reset wake the waiters with BrokenBarrierError") {
    mp::Barrier b(2);
    auto wait_for_waiter = [&] {
        auto deadline = Clock::now() + 5s;
        while (b.n_waiting() != 1 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
        REQUIRE(b.n_waiting() == 1);
    };
    auto p = start(barrier_wait_or_exit_5, b);
    wait_for_waiter();
    b.abort();
    REQUIRE(b.broken());
    REQUIRE(finish(p) == 5);
    b.reset();
    REQUIRE_FALSE(b.broken());

    auto q = start(barrier_wait_or_exit_5, b);
    wait_for_waiter();
    b.reset();  // not broken afterwards, but the waiter's round is
    REQUIRE(finish(q) == 5);
    REQUIRE_FALSE(b.broken());
    REQUIRE(b.n_waiting() == 0);
}

TEST_CASE("Barrier: an action that throws breaks it; the thrower sees its exception") {
    mp::Barrier b(2, [] { throw std::runtime_error("boom"); });
    auto p = start(barrier_wait_reporting, b);
    int mine = 0;
    try {
        b.wait(5.0);
    } catch (const mp::BrokenBarrierError&) {
        mine = 3;
    } catch (const std::runtime_error&) {
        mine = 2;
    }
    int theirs = finish(p);
    REQUIRE(std::min(mine, theirs) == 2);  // one ran the action and got "boom"
    REQUIRE(std::max(mine, theirs) == 3);  // the other got BrokenBarrierError
    REQUIRE(b.broken());
}

TEST_CASE("Barrier: bad parties and the default timeout") {
    REQUIRE_THROWS_AS(mp::Barrier(0), mp::ValueError);
    REQUIRE_THROWS_AS(mp::Barrier(-2), mp::ValueError);
    mp::Barrier single(1);
    REQUIRE(single.wait() == 0);
    REQUIRE(single.wait() == 0);
    mp::Barrier b(2, {}, 50ms);
    auto t0 = Clock::now();
    REQUIRE_THROWS_AS(b.wait(), mp::BrokenBarrierError);
    REQUIRE(seconds_since(t0) >= 0.045);
    REQUIRE(seconds_since(t0) < 2.0);
}

TEST_CASE("Barrier: an action with captures cannot travel to a spawned child") {
    mp::Value<int> rounds(0, false);
    mp::Barrier captured(2, [rounds] { ++rounds.value(); });
    auto p = mp::get_context("spawn").Process(barrier_wait, captured);
    try {
        p.start();
        FAIL("a Barrier with a capturing action was sent to a spawned child");
    } catch (const mp::SerializationError& e) {
        CHECK(std::string(e.what()).find("a Barrier with an action cannot be sent to a spawned "
                                         "child") != std::string::npos);
    }
    // A function pointer travels (it is its code's name), with the barrier.
    mp::Barrier plain(2, +[] {});
    auto q = mp::get_context("spawn").Process(barrier_wait, plain);
    q.start();
    REQUIRE(plain.wait(5.0) >= 0);
    REQUIRE(finish(q) == 0);
}

TEST_CASE("handles refuse to be sent in a message (they travel at process start only)") {
    try {
        (void)mp::serialize(mp::Lock());
        FAIL("a Lock was serialized outside a start record");
    } catch (const mp::SerializationError& e) {
        CHECK(std::string(e.what()).find("a Lock can only be handed to a child process") !=
              std::string::npos);
    }
    CHECK_THROWS_AS(mp::serialize(mp::Event()), mp::SerializationError);
    CHECK_THROWS_AS(mp::serialize(mp::Condition()), mp::SerializationError);
    CHECK_THROWS_AS(mp::serialize(mp::Barrier(2)), mp::SerializationError);
    CHECK_THROWS_AS(mp::serialize(mp::Semaphore()), mp::SerializationError);
}

// ---- Lockable: std::scoped_lock and std::unique_lock on every lock --------------------------

TEMPLATE_TEST_CASE("Lockable: scoped_lock and unique_lock", "", mp::Lock, mp::RLock,
                   mp::Semaphore, mp::BoundedSemaphore, mp::Condition) {
    TestType l;
    {
        std::scoped_lock g(l);
        std::atomic<bool> other{true};
        std::thread([&] { other = l.try_lock(); }).join();
        REQUIRE_FALSE(other);  // a Semaphore(1) is taken too
    }
    {
        std::unique_lock g(l, std::defer_lock);
        REQUIRE(g.try_lock_for(100ms));
        g.unlock();
        REQUIRE(g.try_lock_until(Clock::now() + 100ms));
    }
    mp::Lock second;
    {
        std::scoped_lock both(l, second);
        REQUIRE_FALSE(second.acquire(false));
    }
    REQUIRE(second.acquire(false));
    second.release();
    REQUIRE(l.acquire(false));
    l.release();
}

TEST_CASE("AnyLock: wraps a Lock or an RLock and shares it") {
    mp::Lock lock;
    mp::AnyLock any = lock;
    REQUIRE(any.get_if<mp::Lock>() != nullptr);
    REQUIRE(any.get_if<mp::RLock>() == nullptr);
    std::scoped_lock g(any);
    REQUIRE_FALSE(lock.acquire(false));  // the same lock
    auto p = start(try_any_lock, any, lock);  // and the same in a child
    REQUIRE(finish(p) == 0);
}
