// One body per primitive, run twice: over the library's own object (shared memory) and over a
// manager's proxy of it (an object at the server), as CPython runs _TestQueue, _TestLock,
// _TestEvent... for processes and for managers. Queue, JoinableQueue, Lock, RLock, Semaphore,
// BoundedSemaphore, Event, Condition, Barrier and Value, each used across a real child process.
// The children's targets are function-template instantiations taking the handles as arguments,
// so every body also runs under each start method (tests/CMakeLists.txt).
//
// A body asks its maker (TestType) for the object; the maker also names the object's types and
// bridges the few places where the two spell things differently (see `library` and
// `manager_proxy`). The handshakes between parent and child use the library's Event, Semaphore,
// Queue and Value whatever is under test, so that each body tests one kind of object.
#include <catch2/catch.hpp>

#include "helpers.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <multiprocessing/context.hpp>
#include <multiprocessing/managers.hpp>
#include <multiprocessing/process.hpp>
#include <multiprocessing/queues.hpp>
#include <multiprocessing/sharedctypes.hpp>
#include <multiprocessing/synchronize.hpp>

namespace mp = multiprocessing;
using test::check;
using test::finish;
using test::start;
using namespace std::chrono_literals;

namespace {

// Long enough never to pass unless something is broken (a crashed child fails a check, not the
// ctest timeout); `brief` is for waits that must time out.
constexpr auto limit = 10s;
constexpr auto brief = 20ms;

// The library's own objects.
struct library {
    template <class T>
    using Queue = mp::Queue<T>;
    template <class T>
    using JoinableQueue = mp::JoinableQueue<T>;
    using Lock = mp::Lock;
    using RLock = mp::RLock;
    using Semaphore = mp::Semaphore;
    using BoundedSemaphore = mp::BoundedSemaphore;
    using Event = mp::Event;
    using Condition = mp::Condition;
    using Barrier = mp::Barrier;
    template <class T>
    using Value = mp::Value<T>;


    template <class T>
    Queue<T> queue(int maxsize = 0) { return Queue<T>(maxsize); }
    template <class T>
    JoinableQueue<T> joinable_queue(int maxsize = 0) { return JoinableQueue<T>(maxsize); }
    Lock lock() { return Lock(); }
    RLock rlock() { return RLock(); }
    Semaphore semaphore(int value) { return Semaphore(value); }
    BoundedSemaphore bounded_semaphore(int value) { return BoundedSemaphore(value); }
    Event event() { return Event(); }
    Condition condition() { return Condition(); }
    Barrier barrier(int parties) { return Barrier(parties); }
    // The library's Barrier takes its default timeout after the action (none here).
    template <class Rep, class Period>
    Barrier barrier(int parties, std::chrono::duration<Rep, Period> timeout) {
        return Barrier(parties, {}, timeout);
    }
    template <class T>
    Value<T> value(T init) { return Value<T>(init); }

    // Writing a Value: value() is a reference into shared memory; there is no set().
    template <class T>
    static T get(const Value<T>& v) { return v.value(); }
    template <class T>
    static void set(const Value<T>& v, T x) { v.value() = x; }
};

// A manager's proxies of the same objects; the manager lives as long as the maker.
struct manager_proxy {
    mp::SyncManager manager = mp::Manager();

    template <class T>
    using Queue = mp::QueueProxy<T>;
    template <class T>
    using JoinableQueue = mp::QueueProxy<T>;  // one proxy type for both, as in Python
    using Lock = mp::AcquirerProxy;
    using RLock = mp::AcquirerProxy;
    using Semaphore = mp::AcquirerProxy;
    using BoundedSemaphore = mp::AcquirerProxy;
    using Event = mp::EventProxy;
    using Condition = mp::ConditionProxy;
    using Barrier = mp::BarrierProxy;
    template <class T>
    using Value = mp::ValueProxy<T>;


    template <class T>
    Queue<T> queue(int maxsize = 0) { return manager.Queue<T>(maxsize); }
    template <class T>
    JoinableQueue<T> joinable_queue(int maxsize = 0) { return manager.JoinableQueue<T>(maxsize); }
    Lock lock() { return manager.Lock(); }
    RLock rlock() { return manager.RLock(); }
    Semaphore semaphore(int value) { return manager.Semaphore(value); }
    BoundedSemaphore bounded_semaphore(int value) { return manager.BoundedSemaphore(value); }
    Event event() { return manager.Event(); }
    Condition condition() { return manager.Condition(); }
    Barrier barrier(int parties) { return manager.Barrier(parties); }
    template <class Rep, class Period>
    Barrier barrier(int parties, std::chrono::duration<Rep, Period> timeout) {
        return manager.Barrier(parties, timeout);
    }
    template <class T>
    Value<T> value(T init) { return manager.Value<T>(init); }

    template <class T>
    static T get(const Value<T>& v) { return v.get(); }
    template <class T>
    static void set(const Value<T>& v, T x) { v.set(x); }
};

// In a child: whether `f()` throws E (anything else propagates and fails the child).
template <class E, class F>
bool throws(F f) {
    try {
        f();
    } catch (const E&) {
        return true;
    }
    return false;
}

// ---- the children's targets ---------------------------------------------------------------

template <class M>
void put_numbers(typename M::template Queue<std::string> q, int n) {
    for (int i = 0; i < n; ++i) q.put(std::to_string(i), limit);
}

// Fills a queue of maxsize 2, then puts a third item, which waits for the parent's get().
template <class M>
void fill_bounded(typename M::template Queue<int> q, mp::Event full) {
    q.put(1, limit);
    q.put(2, limit);
    check(q.full() && q.qsize() == 2, "full() and qsize() at maxsize");
    check(throws<mp::Full>([&] { q.put_nowait(3); }), "put_nowait on a full queue throws Full");
    full.set();
    q.put(3, limit);
}

template <class M>
void consume_tasks(typename M::template JoinableQueue<int> q, int n) {
    for (int i = 0; i < n; ++i) {
        check(q.get(limit) == i, "items in the order put");
        q.task_done();
    }
}

// Takes the lock, lets the parent release it, then takes it again.
template <class M>
void hold_lock(typename M::Lock lock, mp::Event held, mp::Event released) {
    check(lock.acquire(true, limit), "acquire a free lock");
    held.set();
    check(released.wait(limit), "the parent's release");
    check(lock.acquire(true, limit), "acquire again after another process released it");
    lock.release();
}

// The parent holds the RLock: it is not this process's to take or to release.
template <class M>
void foreign_rlock(typename M::RLock r) {
    check(r.locked(), "locked() sees the parent's hold");
    check(!r.acquire(false), "acquire(false) of an RLock held elsewhere");
    check(!r.acquire(true, brief), "a timed acquire of an RLock held elsewhere times out");
    check(throws<mp::ValueError>([&] { r.release(); }), "release by a non-owner throws");
}

template <class M>
void recursive_rlock(typename M::RLock r) {
    check(r.acquire(true, limit), "acquire a free RLock");
    check(r.acquire(false) && r.acquire(true, limit), "the owner acquires again");
    r.release();
    r.release();
    check(r.locked(), "held until the last release");
    r.release();
    check(!r.locked(), "free after as many releases as acquires");
}

template <class M>
void take_semaphore(typename M::Semaphore s, mp::Event waiting) {
    check(s.locked() && !s.acquire(false), "a semaphore at zero refuses");
    waiting.set();
    check(s.acquire(true, limit), "the parent's release lets this process in");
}

template <class M>
void release_bounded(typename M::BoundedSemaphore b) {
    b.release();  // taken by the parent: a semaphore has no owner
    check(throws<mp::ValueError>([&] { b.release(); }), "release above the bound throws ValueError");
}

template <class M>
void wait_then_clear(typename M::Event e, mp::Event waiting) {
    check(!e.is_set(), "not set yet");
    waiting.set();
    check(e.wait(limit), "wait() sees the parent's set()");
    check(e.is_set(), "is_set() after set()");
    e.clear();
}

template <class M>
void set_event(typename M::Event e) { e.set(); }

template <class M>
void notify_state(typename M::Condition c, mp::Value<int> state, int to) {
    // Only possible once the parent's wait has released every level of the lock.
    check(c.acquire(true, limit), "acquire while the parent waits");
    state.value() = to;
    c.notify();
    c.release();
}

template <class M>
void condition_held_elsewhere(typename M::Condition c) {
    check(!c.acquire(false), "the parent holds the condition's lock");
}

template <class M>
void wait_for_state(typename M::Condition c, mp::Value<int> state, mp::Semaphore waiting) {
    check(c.acquire(true, limit), "acquire");
    waiting.release();  // still holding the lock: the parent gets it only once this one waits
    check(c.wait_for([&] { return state.value() == 2; }, limit), "notify_all wakes every waiter");
    c.release();
}

template <class M>
void barrier_party(typename M::Barrier b, mp::Queue<int> index) {
    index.put(b.wait(limit));
}

// The barrier is aborted, or broken by a timeout, before or while this party waits.
template <class M>
void barrier_broken(typename M::Barrier b, mp::Event arriving) {
    arriving.set();
    check(throws<mp::BrokenBarrierError>([&] { b.wait(limit); }), "wait() on a broken barrier throws");
    check(b.broken(), "broken() in the child");
}

template <class M>
void check_and_set(typename M::template Value<int> v, int expected, int to) {
    check(M::get(v) == expected, "the parent's value");
    M::set(v, to);
}

template <class M>
void add_under_lock(typename M::template Value<int> v, typename M::Lock lock, int n) {
    for (int i = 0; i < n; ++i) {
        std::scoped_lock g(lock);
        M::set(v, M::get(v) + 1);
    }
}

}  // namespace

TEMPLATE_TEST_CASE("Queue: FIFO from a child, Empty, Full and the sizes", "[queue]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto q = make.template queue<std::string>();
    CHECK(q.empty());
    CHECK(q.qsize() == 0);
    CHECK_FALSE(q.full());  // never, unbounded
    auto p = start(put_numbers<M>, q, 50);
    for (int i = 0; i < 50; ++i) REQUIRE(q.get(limit) == std::to_string(i));
    CHECK(finish(p) == 0);
    CHECK(q.empty());
    CHECK(q.qsize() == 0);
    CHECK_THROWS_AS(q.get(brief), mp::Empty);
    CHECK_THROWS_AS(q.get_nowait(), mp::Empty);

    auto b = make.template queue<int>(2);
    mp::Event full;
    p = start(fill_bounded<M>, b, full);
    REQUIRE(full.wait(limit));
    CHECK(b.full());
    CHECK(b.qsize() == 2);
    CHECK_THROWS_AS(b.put_nowait(9), mp::Full);
    CHECK_THROWS_AS(b.put(9, brief), mp::Full);
    // Each get makes room for the child's blocked third put.
    CHECK(b.get(limit) == 1);
    CHECK(b.get(limit) == 2);
    CHECK(b.get(limit) == 3);
    CHECK(finish(p) == 0);
    CHECK(b.empty());
    CHECK_FALSE(b.full());
}

TEMPLATE_TEST_CASE("JoinableQueue: task_done and join(timeout) across a child", "[queue]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto q = make.template joinable_queue<int>();
    CHECK(q.join(brief));  // nothing put: nothing to wait for
    for (int i = 0; i < 3; ++i) q.put(i);
    CHECK_FALSE(q.join(brief));  // three tasks unfinished
    auto p = start(consume_tasks<M>, q, 3);
    CHECK(q.join(limit));
    CHECK(finish(p) == 0);
    CHECK(q.empty());
    CHECK_THROWS_AS(q.task_done(), mp::ValueError);  // more task_done() than items put

    // A got item is unfinished until its task_done().
    q.put(7);
    CHECK(q.get(limit) == 7);
    CHECK_FALSE(q.join(brief));
    q.task_done();
    CHECK(q.join(limit));
}

TEMPLATE_TEST_CASE("Lock: exclusion across a child, release by another process", "[lock]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto lock = make.lock();
    CHECK_FALSE(lock.locked());
    REQUIRE(lock.acquire(false));
    CHECK(lock.locked());
    CHECK_FALSE(lock.acquire(false));  // not recursive, even for its holder
    lock.release();
    CHECK_FALSE(lock.locked());

    mp::Event held, released;
    auto p = start(hold_lock<M>, lock, held, released);
    REQUIRE(held.wait(limit));
    CHECK(lock.locked());
    CHECK_FALSE(lock.acquire(false));
    CHECK_FALSE(lock.acquire(true, brief));
    CHECK_FALSE(lock.try_lock_for(brief));
    lock.release();  // the child's hold: any process may release a Lock, as in Python
    CHECK_FALSE(lock.locked());
    released.set();
    CHECK(finish(p) == 0);

    CHECK_FALSE(lock.locked());
    CHECK_THROWS_AS(lock.release(), mp::ValueError);  // not locked
    {
        std::scoped_lock g(lock);
        CHECK(lock.locked());
    }
    CHECK_FALSE(lock.locked());
}

TEMPLATE_TEST_CASE("RLock: recursion, and ownership across a child", "[lock]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto r = make.rlock();
    REQUIRE(r.acquire(true, limit));
    REQUIRE(r.acquire(false));  // its owner takes it again
    CHECK(r.locked());
    auto p = start(foreign_rlock<M>, r);
    CHECK(finish(p) == 0);
    r.release();
    CHECK(r.locked());  // held once still: the child is refused again
    p = start(foreign_rlock<M>, r);
    CHECK(finish(p) == 0);
    r.release();
    CHECK_FALSE(r.locked());
    CHECK_THROWS_AS(r.release(), mp::ValueError);  // owned by nobody

    p = start(recursive_rlock<M>, r);
    CHECK(finish(p) == 0);
    CHECK_FALSE(r.locked());
    CHECK(r.acquire(false));
    r.release();
}

TEMPLATE_TEST_CASE("Semaphore and BoundedSemaphore: counting across a child, the bound",
                   "[semaphore]", library, manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto s = make.semaphore(2);
    CHECK_FALSE(s.locked());
    REQUIRE(s.acquire(false));
    REQUIRE(s.acquire(true, limit));
    CHECK(s.locked());  // at zero: acquire() would block
    CHECK_FALSE(s.acquire(true, brief));
    mp::Event waiting;
    auto p = start(take_semaphore<M>, s, waiting);
    REQUIRE(waiting.wait(limit));
    s.release();
    CHECK(finish(p) == 0);
    // The child's acquire outlives it: a semaphore has no owner.
    CHECK_FALSE(s.acquire(false));
    // Unbounded: releases above the initial value count too.
    for (int i = 0; i < 3; ++i) s.release();
    for (int i = 0; i < 3; ++i) CHECK(s.acquire(false));
    CHECK_FALSE(s.acquire(false));

    auto b = make.bounded_semaphore(1);
    CHECK_THROWS_AS(b.release(), mp::ValueError);  // already at its initial value
    REQUIRE(b.acquire(false));
    CHECK(b.locked());
    p = start(release_bounded<M>, b);
    CHECK(finish(p) == 0);
    CHECK(b.acquire(false));  // the child's release counted here
    b.release();
}

TEMPLATE_TEST_CASE("Event: set, clear, is_set and wait(timeout) across a child", "[event]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto e = make.event();
    CHECK_FALSE(e.is_set());
    CHECK_FALSE(e.wait(brief));
    mp::Event waiting;
    auto p = start(wait_then_clear<M>, e, waiting);
    REQUIRE(waiting.wait(limit));
    e.set();
    CHECK(finish(p) == 0);
    CHECK_FALSE(e.is_set());  // the child cleared it
    CHECK_FALSE(e.wait(brief));

    p = start(set_event<M>, e);
    CHECK(e.wait(limit));
    CHECK(finish(p) == 0);
    CHECK(e.is_set());
    CHECK(e.wait(brief));  // set: returns at once
    e.clear();
    CHECK_FALSE(e.is_set());
}

TEMPLATE_TEST_CASE("Condition: wait, wait_for and notify with children", "[condition]", library,
                   manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto c = make.condition();
    mp::Value<int> state(0);
    // Without its lock.
    CHECK_THROWS_AS(c.wait(brief), mp::ValueError);
    CHECK_THROWS_AS(c.notify(), mp::ValueError);

    // Its lock is an RLock: held twice, and wait() must release both levels.
    REQUIRE(c.acquire(true, limit));
    REQUIRE(c.acquire(true, limit));
    CHECK_FALSE(c.wait(brief));  // nobody notifies
    CHECK_FALSE(c.wait_for([&] { return state.value() == 1; }, brief));
    c.notify();  // nobody waits: nothing happens
    auto p = start(notify_state<M>, c, state, 1);
    CHECK(c.wait_for([&] { return state.value() == 1; }, limit));
    c.release();
    // Taken back at the same depth: still held once.
    auto q = start(condition_held_elsewhere<M>, c);
    CHECK(finish(q) == 0);
    c.release();
    CHECK(finish(p) == 0);

    // notify_all wakes every waiter.
    mp::Semaphore waiting(0);
    std::vector<mp::Process> waiters;
    for (int i = 0; i < 2; ++i) waiters.push_back(start(wait_for_state<M>, c, state, waiting));
    for (int i = 0; i < 2; ++i) REQUIRE(waiting.acquire(true, limit));
    REQUIRE(c.acquire(true, limit));  // both are waiting now: they let go of the lock
    state.value() = 2;
    c.notify_all();
    c.release();
    for (auto& w : waiters) CHECK(finish(w) == 0);
}

TEMPLATE_TEST_CASE("Barrier: parties from parent and child, abort, reset and timeouts", "[barrier]",
                   library, manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto b = make.barrier(2);
    CHECK(b.parties() == 2);
    CHECK(b.n_waiting() == 0);
    CHECK_FALSE(b.broken());
    mp::Queue<int> index;
    // Two rounds: the barrier is reusable; each party gets its own arrival index.
    for (int round = 0; round < 2; ++round) {
        auto p = start(barrier_party<M>, b, index);
        int mine = b.wait(limit);
        int theirs = index.get(limit);
        CHECK(std::min(mine, theirs) == 0);
        CHECK(std::max(mine, theirs) == 1);
        CHECK(finish(p) == 0);
    }

    // abort() breaks the child's wait, whether it began before the abort or after.
    mp::Event arriving;
    auto p = start(barrier_broken<M>, b, arriving);
    REQUIRE(arriving.wait(limit));
    b.abort();
    CHECK(finish(p) == 0);
    CHECK(b.broken());
    CHECK(b.n_waiting() == 0);
    CHECK_THROWS_AS(b.wait(limit), mp::BrokenBarrierError);
    b.reset();
    CHECK_FALSE(b.broken());
    p = start(barrier_party<M>, b, index);
    CHECK(b.wait(limit) + index.get(limit) == 1);
    CHECK(finish(p) == 0);

    // A lone party's timeout breaks the barrier for everybody.
    CHECK_THROWS_AS(b.wait(brief), mp::BrokenBarrierError);
    CHECK(b.broken());
    p = start(barrier_broken<M>, b, arriving);
    CHECK(finish(p) == 0);

    // The default timeout given at construction.
    auto t = make.barrier(2, brief);
    CHECK_THROWS_AS(t.wait(), mp::BrokenBarrierError);
    CHECK(t.broken());
}

TEMPLATE_TEST_CASE("Value: read and written by children, increments under a lock", "[value]",
                   library, manager_proxy) {
    using M = TestType;
    M make;
    CAPTURE(mp::get_start_method());

    auto v = make.template value<int>(7);
    CHECK(v.value() == 7);  // reading is spelled alike
    auto p = start(check_and_set<M>, v, 7, 42);
    CHECK(finish(p) == 0);
    CHECK(v.value() == 42);
    M::set(v, 0);
    CHECK(M::get(v) == 0);

    auto lock = make.lock();
    std::vector<mp::Process> adders;
    for (int i = 0; i < 2; ++i) adders.push_back(start(add_under_lock<M>, v, lock, 100));
    add_under_lock<M>(v, lock, 100);
    for (auto& a : adders) CHECK(finish(a) == 0);
    CHECK(v.value() == 300);
}
