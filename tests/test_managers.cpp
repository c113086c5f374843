// Managers: the server process and its lifetime, every proxy type between real processes,
// registered user types over TCP, hostile input, and a dead manager.
#include <multiprocessing.hpp>
#include <multiprocessing/context.hpp>
#include <multiprocessing/managers.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/prctl.h>
#include <unistd.h>

namespace mp = multiprocessing;
namespace posix = mp::detail::posix;
using namespace std::chrono_literals;

namespace {

struct Point {
    int x = 0, y = 0;
    friend bool operator==(const Point&, const Point&) = default;
};

// A user type served by a manager.
class Counter {
public:
    Counter() = default;
    explicit Counter(int start) : n_(start) {}
    int increment(int by) { return n_ += by; }
    int value() const { return n_; }
    void reset() noexcept { n_ = 0; }
    std::string describe(const std::string& prefix, int width) const {
        return prefix + std::string(std::size_t(width), '*') + std::to_string(n_);
    }
    int fail(int code) const {
        if (code == 1) throw std::invalid_argument("bad code");
        if (code == 2) throw std::out_of_range("code out of range");
        return code;
    }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(n_);
    }

private:
    int n_ = 0;
};

void register_counter() {
    mp::BaseManager::register_<Counter>(
        "Counter", mp::method("increment", &Counter::increment),
        mp::method("value", &Counter::value), mp::method("reset", &Counter::reset),
        mp::method("describe", &Counter::describe), mp::method("fail", &Counter::fail));
}

// Waits until `pid` has ended (as a pidfd tells), up to `timeout`.
bool process_ends_within(int pid, std::chrono::milliseconds timeout) {
    auto fd = posix::open_pidfd_or_gone(pid);
    if (!fd) return true;
    return posix::wait_readable(fd.get(), mp::detail::deadline_after(timeout));
}

// A target a spawned child can run: a function, with serializable (proxy) arguments.
void spawned_fill(mp::DictProxy<int, int> d, mp::AcquirerProxy lock, int i) {
    std::scoped_lock g(lock);
    d[i] = i * 10;
}

template <class F>
auto elapsed(F f) {
    auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::steady_clock::now() - start;
}

}  // namespace

TEST_CASE("seed 15: a dict and a list filled by four processes") {
    auto manager = mp::Manager();
    auto d = manager.dict<int, int>();
    auto l = manager.list<int>();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 4; ++i)
        ps.emplace_back(
            [](mp::DictProxy<int, int> d, mp::ListProxy<int> l, int i) {
                d[i] = i * i;
                l.append(i);
            },
            d, l, i);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    for (auto& p : ps) CHECK(p.exitcode() == 0);
    auto items = d.items();
    std::ranges::sort(items);
    auto values = l.to_vector();
    std::ranges::sort(values);
    CHECK(items == std::vector<std::pair<int, int>>{{0, 0}, {1, 1}, {2, 4}, {3, 9}});
    CHECK(values == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("increments from four processes under a manager Lock are exact") {
    auto manager = mp::Manager();
    auto lock = manager.Lock();
    auto v = manager.Value<int>(0);
    auto d = manager.dict<std::string, int>();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 4; ++i)
        ps.emplace_back(
            [](mp::AcquirerProxy lock, mp::ValueProxy<int> v, mp::DictProxy<std::string, int> d) {
                for (int k = 0; k < 50; ++k) {
                    std::scoped_lock g(lock);
                    v.set(v.get() + 1);
                    d["n"] = d.get("n", 0) + 1;
                }
            },
            lock, v, d);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    CHECK(v.get() == 200);
    CHECK(d.at("n") == 200);
}

TEST_CASE("registered methods run atomically at the server: exact total from four processes") {
    register_counter();
    auto manager = mp::Manager();
    auto c = manager.create<Counter>();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 4; ++i)
        ps.emplace_back(
            [](mp::AutoProxy<Counter> c) {
                for (int k = 0; k < 100; ++k) c.call(&Counter::increment, 1);
            },
            c);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    CHECK(c.call(&Counter::value) == 400);
    c.call(&Counter::reset);
    CHECK(c.call(&Counter::value) == 0);
    CHECK(c.call(&Counter::describe, "n=", 2) == "n=**0");
    auto c7 = manager.create(Counter(7));
    CHECK(c7.call(&Counter::increment, 1) == 8);
    // Exceptions come back as their own standard type.
    CHECK(c.call(&Counter::fail, 5) == 5);
    CHECK_THROWS_AS(c.call(&Counter::fail, 1), std::invalid_argument);
    CHECK_THROWS_AS(c.call(&Counter::fail, 2), std::out_of_range);
}

TEST_CASE("DictProxy: Python's dict operations") {
    auto manager = mp::Manager();
    auto d = manager.dict<std::string, Point>();
    CHECK(d.size() == 0);
    CHECK(d.empty());
    d["b"] = Point{1, 2};
    d.set("a", Point{3, 4});
    d["c"] = Point{5, 6};
    CHECK(d.size() == 3);
    CHECK(Point(d["b"]) == Point{1, 2});
    CHECK(d.at("a") == Point{3, 4});
    CHECK(d.get("zz") == std::nullopt);
    CHECK(d.get("zz", Point{9, 9}) == Point{9, 9});
    CHECK(d.contains("c"));
    CHECK_FALSE(d.contains("zz"));
    CHECK_THROWS_AS(d.at("zz"), std::out_of_range);
    CHECK_THROWS_AS(Point(d["zz"]), std::out_of_range);
    // Insertion order, as Python's dict; overwriting keeps the place.
    d["b"] = Point{7, 7};
    CHECK(d.keys() == std::vector<std::string>{"b", "a", "c"});
    CHECK(d.values() == std::vector<Point>{{7, 7}, {3, 4}, {5, 6}});
    CHECK(d.items().front() == std::pair<std::string, Point>{"b", {7, 7}});
    CHECK(d.erase("a"));
    CHECK_FALSE(d.erase("a"));
    CHECK(d.pop("c") == Point{5, 6});
    CHECK_THROWS_AS(d.pop("c"), std::out_of_range);
    CHECK(d.pop("c", Point{0, 1}) == Point{0, 1});
    CHECK(d.setdefault("b", Point{}) == Point{7, 7});
    CHECK(d.setdefault("n", Point{1, 1}) == Point{1, 1});
    d.update({{"x", Point{1, 0}}, {"y", Point{0, 1}}});
    d.update(std::map<std::string, Point>{{"z", Point{2, 2}}});
    CHECK(d.size() == 5);
    CHECK(d.popitem() == std::pair<std::string, Point>{"z", {2, 2}});
    d.clear();
    CHECK(d.size() == 0);
    CHECK_THROWS_AS(d.popitem(), std::out_of_range);
    // Many erasures keep order and lookups right.
    auto e = manager.dict<int, int>(std::vector<std::pair<int, int>>{{1, 10}, {2, 20}});
    for (int i = 3; i < 200; ++i) e[i] = i * 10;
    for (int i = 1; i < 190; ++i) e.erase(i);
    CHECK(e.keys() == std::vector<int>{190, 191, 192, 193, 194, 195, 196, 197, 198, 199});
    CHECK(e.at(195) == 1950);
    // 3.13: d |= other; d.copy() (a plain map, any kind)
    auto f = manager.dict<std::string, int>();
    f |= std::vector<std::pair<std::string, int>>{{"b", 2}, {"a", 1}};
    f |= std::map<std::string, int>{{"b", 3}};
    CHECK(f.copy() == std::map<std::string, int>{{"a", 1}, {"b", 3}});
    CHECK(f.copy<std::unordered_map<std::string, int>>().at("b") == 3);
}

TEST_CASE("ListProxy: Python's list operations, negative indexes, errors") {
    auto manager = mp::Manager();
    auto l = manager.list<int>({1, 2, 3});
    l.append(4);
    l.extend({5, 6});
    l.extend(std::vector<int>{7});
    CHECK(l.size() == 7);
    CHECK(l.get(0) == 1);
    CHECK(int(l[-1]) == 7);
    l[0] = 10;
    l.set(-2, 60);
    CHECK(l.to_vector() == std::vector<int>{10, 2, 3, 4, 5, 60, 7});
    l.insert(1, 20);
    l.insert(100, 99);  // clamped to the end, as in Python
    CHECK(l.pop() == 99);
    CHECK(l.pop(0) == 10);
    CHECK(l.to_vector() == std::vector<int>{20, 2, 3, 4, 5, 60, 7});
    l.remove(60);
    CHECK(l.index(5) == 4);
    l.append(2);
    CHECK(l.count(2) == 2);
    CHECK(l.contains(3));
    CHECK_FALSE(l.contains(42));
    CHECK_THROWS_AS(l.get(100), std::out_of_range);
    CHECK_THROWS_AS(l.get(-100), std::out_of_range);
    CHECK_THROWS_AS(l.remove(42), mp::ValueError);
    CHECK_THROWS_AS(l.index(42), mp::ValueError);
    l.clear();
    CHECK(l.empty());
    CHECK_THROWS_AS(l.pop(), std::out_of_range);
    auto s = manager.list<std::string>(std::vector<std::string>{"a", "b"});
    s.append("c");
    CHECK(s.to_vector() == std::vector<std::string>{"a", "b", "c"});
    // reverse, sort (stable; a key; reversed), +=, *=, copy
    s.reverse();
    CHECK(s.copy() == std::vector<std::string>{"c", "b", "a"});
    auto p = manager.list<Point>({{3, 0}, {1, 1}, {2, 0}, {1, 0}});
    p.sort({}, &Point::x);
    CHECK(p.to_vector() == std::vector<Point>{{1, 1}, {1, 0}, {2, 0}, {3, 0}});
    p.sort(std::ranges::greater{}, &Point::x);
    CHECK(p.to_vector() == std::vector<Point>{{3, 0}, {2, 0}, {1, 1}, {1, 0}});
    auto n = manager.list<int>({2, 1});
    n.sort();
    n += std::vector<int>{3};
    n *= 2;
    CHECK(n.to_vector() == std::vector<int>{1, 2, 3, 1, 2, 3});
    n *= 0;
    CHECK(n.empty());
    n *= std::numeric_limits<std::ptrdiff_t>::max();  // empty: nothing to repeat, at once
    CHECK(n.empty());
    n.append(1);
    CHECK_THROWS_AS(n *= std::numeric_limits<std::ptrdiff_t>::max(), std::length_error);
    CHECK(n.size() == 1);
    // A sort races with appends from a child: the result is a sorted list of all items (the
    // sort retried when the list changed under it), or the appends came after the sort.
    auto big = manager.list<int>();
    for (int i = 0; i < 200; ++i) big.append(199 - i);
    auto child = mp::Process(
        +[](mp::ListProxy<int> l) {
            for (int i = 200; i < 400; ++i) l.append(i);
        },
        big);
    child.start();
    big.sort();
    REQUIRE(child.join(20s));
    auto all = big.to_vector();
    CHECK(all.size() == 400);
    CHECK(std::is_sorted(all.begin(), all.begin() + 200));
    std::ranges::sort(all);
    for (int i = 0; i < 400; ++i) CHECK(all[std::size_t(i)] == i);
}

TEST_CASE("SetProxy: Python 3.14's manager.set()") {
    auto manager = mp::Manager();
    auto s = manager.set<int>({1, 2, 3});
    auto sorted = [](std::vector<int> v) {
        std::ranges::sort(v);
        return v;
    };
    CHECK(s.size() == 3);
    s.add(3);
    s.add(4);
    CHECK(s.size() == 4);
    CHECK(s.contains(4));
    CHECK(s.discard(4));
    CHECK_FALSE(s.discard(4));
    CHECK_THROWS_AS(s.remove(4), std::out_of_range);
    s.remove(3);
    CHECK(sorted(s.copy()) == std::vector<int>{1, 2});
    s |= std::vector<int>{5, 6};
    s -= std::vector<int>{1};
    CHECK(sorted(s.copy()) == std::vector<int>{2, 5, 6});
    s &= std::vector<int>{2, 5, 7};
    CHECK(sorted(s.copy()) == std::vector<int>{2, 5});
    s ^= std::vector<int>{5, 8};
    CHECK(sorted(s.copy()) == std::vector<int>{2, 8});
    CHECK(sorted(s.union_(std::vector<int>{1})) == std::vector<int>{1, 2, 8});
    CHECK(sorted(s.intersection(std::vector<int>{8, 9})) == std::vector<int>{8});
    CHECK(sorted(s.difference(std::vector<int>{8})) == std::vector<int>{2});
    CHECK(sorted(s.symmetric_difference(std::vector<int>{8, 9})) == std::vector<int>{2, 9});
    CHECK(s.isdisjoint(std::vector<int>{1, 3}));
    CHECK_FALSE(s.isdisjoint(std::vector<int>{2}));
    CHECK(s.issubset(std::vector<int>{2, 8, 10}));
    CHECK_FALSE(s.issubset(std::vector<int>{2}));
    CHECK(s.issuperset(std::vector<int>{8}));
    auto v = s.pop();
    CHECK((v == 2 || v == 8));
    CHECK(s.size() == 1);
    s.clear();
    CHECK(s.empty());
    CHECK_THROWS_AS(s.pop(), std::out_of_range);
    // Shared with a child, as every proxy.
    auto words = manager.set<std::string>();
    auto child = mp::Process(
        +[](mp::SetProxy<std::string> w) {
            w.add("from the child");
            w.add("twice");
            w.add("twice");
        },
        words);
    child.start();
    REQUIRE(child.join(20s));
    CHECK(child.exitcode() == 0);
    CHECK(words.size() == 2);
    CHECK(words.contains("from the child"));
}

TEST_CASE("ValueProxy, ArrayProxy and NamespaceProxy") {
    auto manager = mp::Manager();
    auto v = manager.Value<double>(1.5);
    CHECK(v.get() == 1.5);
    v.set(2.5);
    CHECK(v.value() == 2.5);
    v.value(3.5);
    CHECK(v.get() == 3.5);

    auto a = manager.Array<int>({1, 2, 3});
    CHECK(a.size() == 3);
    a[0] = 10;
    a.set(-1, 30);
    CHECK(a.get(1) == 2);
    CHECK(a.to_vector() == std::vector<int>{10, 2, 30});
    CHECK_THROWS_AS(a.get(3), std::out_of_range);
    auto z = manager.Array<double>(4);
    CHECK(z.to_vector() == std::vector<double>(4, 0.0));

    auto ns = manager.Namespace();
    ns.set("x", 10);
    ns.set("name", std::string("mp"));
    ns.set("point", Point{1, 2});
    CHECK(ns.get<int>("x") == 10);
    CHECK(ns.get<std::string>("name") == "mp");
    CHECK(ns.get<Point>("point") == Point{1, 2});
    CHECK(ns.contains("x"));
    CHECK_FALSE(ns.contains("y"));
    CHECK_THROWS_AS(ns.get<int>("y"), std::out_of_range);
    CHECK_THROWS_AS(ns.get<double>("x"), mp::SerializationError);
    CHECK(ns.names() == std::vector<std::string>{"name", "point", "x"});
    CHECK(ns.erase("x"));
    CHECK_FALSE(ns.erase("x"));
}

TEST_CASE("QueueProxy: FIFO across processes, timeouts, maxsize, JoinableQueue") {
    auto manager = mp::Manager();
    auto q = manager.Queue<std::string>();
    mp::Process producer(
        [](mp::QueueProxy<std::string> q) {
            for (int i = 0; i < 5; ++i) q.put("item " + std::to_string(i));
        },
        q);
    producer.start();
    for (int i = 0; i < 5; ++i) CHECK(q.get() == "item " + std::to_string(i));
    producer.join();
    CHECK(q.empty());
    CHECK_THROWS_AS(q.get_nowait(), mp::Empty);
    auto waited = elapsed([&] { CHECK_THROWS_AS(q.get(50ms), mp::Empty); });
    CHECK(waited >= 40ms);
    CHECK_THROWS_AS(q.get(false, 1.0), mp::Empty);

    auto small = manager.Queue<int>(2);
    small.put(1);
    small.put_nowait(2);
    CHECK(small.full());
    CHECK(small.qsize() == 2);
    CHECK_THROWS_AS(small.put_nowait(3), mp::Full);
    CHECK_THROWS_AS(small.put(3, 20ms), mp::Full);
    CHECK(small.get() == 1);
    small.put(3, 1s);
    CHECK(small.get(0.5) == 2);
    CHECK(small.get() == 3);

    auto jq = manager.JoinableQueue<int>();
    CHECK_THROWS_AS(jq.task_done(), mp::ValueError);
    for (int i = 0; i < 3; ++i) jq.put(i);
    mp::Process worker(
        [](mp::QueueProxy<int> jq) {
            for (int i = 0; i < 3; ++i) {
                jq.get();
                jq.task_done();
            }
        },
        jq);
    worker.start();
    jq.join();
    CHECK(jq.join(0ms));
    worker.join();
    CHECK(worker.exitcode() == 0);
}

TEST_CASE("Lock and RLock proxies: exclusion across processes, ownership, timeouts") {
    auto manager = mp::Manager();
    auto lock = manager.Lock();
    auto held = manager.Event();
    auto done = manager.Event();
    mp::Process holder(
        [](mp::AcquirerProxy lock, mp::EventProxy held, mp::EventProxy done) {
            lock.acquire();
            held.set();
            done.wait();
            lock.release();
        },
        lock, held, done);
    holder.start();
    REQUIRE(held.wait(10s));
    CHECK_FALSE(lock.try_lock());
    CHECK_FALSE(lock.acquire(true, 30ms));
    CHECK_FALSE(lock.try_lock_for(10ms));
    done.set();
    CHECK(lock.acquire(true, 10s));
    lock.release();
    CHECK_THROWS_AS(lock.release(), mp::ValueError);
    holder.join();
    {
        std::scoped_lock g(lock);
        CHECK_FALSE(lock.try_lock());
    }
    CHECK(lock.try_lock_until(std::chrono::steady_clock::now() + 1s));
    lock.unlock();

    auto rlock = manager.RLock();
    CHECK(rlock.acquire());
    CHECK(rlock.acquire());  // reentrant for its owner thread
    std::thread other([rlock] {
        CHECK_FALSE(rlock.try_lock());
        CHECK_THROWS_AS(rlock.release(), mp::ValueError);
    });
    other.join();
    rlock.release();
    rlock.release();
    CHECK_THROWS_AS(rlock.release(), mp::ValueError);
    std::thread taker([rlock] {
        CHECK(rlock.try_lock());
        rlock.unlock();
    });
    taker.join();
}

TEST_CASE("Semaphore and BoundedSemaphore proxies") {
    auto manager = mp::Manager();
    auto s = manager.Semaphore(2);
    CHECK(s.acquire());
    CHECK(s.acquire(false));
    CHECK_FALSE(s.acquire(false));
    CHECK_FALSE(s.acquire(10ms));
    s.release();
    s.release();
    s.release();  // an unbounded semaphore may go above its initial value
    for (int i = 0; i < 3; ++i) CHECK(s.try_lock());
    CHECK_FALSE(s.try_lock());

    auto b = manager.BoundedSemaphore(1);
    CHECK(b.acquire());
    b.release();
    CHECK_THROWS_AS(b.release(), mp::ValueError);
}

TEST_CASE("ConditionProxy: wait, notify, wait_for, timeouts, misuse") {
    auto manager = mp::Manager();
    auto cond = manager.Condition();
    auto state = manager.Value<int>(0);
    mp::Process waiter(
        [](mp::ConditionProxy cond, mp::ValueProxy<int> state) {
            std::scoped_lock g(cond);
            state.set(1);
            cond.notify_all();
            if (!cond.wait_for([&] { return state.get() == 2; }, 10s)) std::exit(2);
            state.set(3);
            cond.notify();
        },
        cond, state);
    waiter.start();
    {
        std::scoped_lock g(cond);
        REQUIRE(cond.wait_for([&] { return state.get() == 1; }, 10s));
        state.set(2);
        cond.notify();
        REQUIRE(cond.wait_for([&] { return state.get() == 3; }, 10s));
    }
    waiter.join();
    CHECK(waiter.exitcode() == 0);
    {
        std::scoped_lock g(cond);
        CHECK_FALSE(cond.wait(20ms));
        CHECK_FALSE(cond.wait_for([] { return false; }, 20ms));
        cond.acquire();  // the lock is an RLock
        cond.release();
    }
    CHECK_THROWS_AS(cond.wait(10ms), mp::ValueError);
    CHECK_THROWS_AS(cond.notify(), mp::ValueError);
}

TEST_CASE("EventProxy across processes") {
    auto manager = mp::Manager();
    auto ev = manager.Event();
    CHECK_FALSE(ev.is_set());
    CHECK_FALSE(ev.wait(20ms));
    mp::Process setter([](mp::EventProxy ev) { ev.set(); }, ev);
    setter.start();
    CHECK(ev.wait(10s));
    CHECK(ev.wait());
    CHECK(ev.is_set());
    ev.clear();
    CHECK_FALSE(ev.is_set());
    setter.join();
}

TEST_CASE("BarrierProxy: parties from several processes, abort, timeout, reset") {
    auto manager = mp::Manager();
    auto barrier = manager.Barrier(3);
    CHECK(barrier.parties() == 3);
    auto indexes = manager.list<int>();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 2; ++i)
        ps.emplace_back(
            [](mp::BarrierProxy b, mp::ListProxy<int> indexes) { indexes.append(b.wait()); },
            barrier, indexes);
    for (auto& p : ps) p.start();
    indexes.append(barrier.wait(10s));
    for (auto& p : ps) p.join();
    auto got = indexes.to_vector();
    std::ranges::sort(got);
    CHECK(got == std::vector<int>{0, 1, 2});
    CHECK(barrier.n_waiting() == 0);
    CHECK_FALSE(barrier.broken());

    // A timeout breaks the barrier, for later waiters too, until reset().
    CHECK_THROWS_AS(barrier.wait(20ms), mp::BrokenBarrierError);
    CHECK(barrier.broken());
    CHECK_THROWS_AS(barrier.wait(), mp::BrokenBarrierError);
    barrier.reset();
    CHECK_FALSE(barrier.broken());

    // abort() releases a waiting party with BrokenBarrierError.
    auto two = manager.Barrier(2);
    auto result = std::async(std::launch::async, [two] {
        try {
            two.wait(10s);
            return std::string("passed");
        } catch (const mp::BrokenBarrierError&) {
            return std::string("broken");
        }
    });
    while (two.n_waiting() == 0) std::this_thread::yield();
    two.abort();
    CHECK(result.get() == "broken");
    CHECK(two.broken());
}

TEST_CASE("a proxy sent through a Pipe works in the receiving process") {
    auto manager = mp::Manager();
    auto d = manager.dict<int, std::string>();
    auto pipe = mp::Pipe();
    auto a = pipe.first, b = pipe.second;
    mp::Process child(
        [](mp::Connection c) {
            auto d = c.recv<mp::DictProxy<int, std::string>>();
            d[7] = "seven";
            c.send(d.size());
        },
        b);
    child.start();
    a.send(d);
    CHECK(a.recv<std::size_t>() == 1);
    CHECK(d.at(7) == "seven");
    child.join();
    // The serialized form names the manager and the object, never the key.
    auto bytes = mp::serialize(d);
    auto copy = mp::deserialize<mp::DictProxy<int, std::string>>(bytes);
    CHECK(copy == d);
    CHECK(copy.at(7) == "seven");
    auto key = manager.address().to_string();
    std::string raw(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    CHECK(raw.find(mp::detail::mgr::process_authkey()) == std::string::npos);
    // An unbound proxy says so.
    mp::DictProxy<int, int> unbound;
    CHECK_THROWS_AS(unbound.size(), mp::ValueError);
}

TEST_CASE("proxies passed to spawned and forkserver children carry their key") {
    auto manager = mp::Manager();
    auto d = manager.dict<int, int>();
    auto lock = manager.Lock();
    int i = 0;
    for (const char* method : {"spawn", "forkserver"}) {
        auto p = mp::get_context(method).Process(spawned_fill, d, lock, ++i);
        p.start();
        p.join();
        CHECK(p.exitcode() == 0);
    }
    CHECK(d.items() == std::vector<std::pair<int, int>>{{1, 10}, {2, 20}});
}

TEST_CASE("a Manager started under the spawn default still serves (its server is forked)") {
    auto ctx = mp::get_context("spawn");
    mp::set_start_method("spawn", true);
    struct restore {
        ~restore() { mp::set_start_method(std::nullopt, true); }
    } r;
    auto manager = mp::Manager();
    auto l = manager.list<int>({1});
    auto p = ctx.Process(
        +[](mp::ListProxy<int> l) { l.append(2); }, l);
    p.start();
    p.join();
    CHECK(l.to_vector() == std::vector<int>{1, 2});
}

TEST_CASE("proxies are used from several threads at once, each with its own connection") {
    auto manager = mp::Manager();
    auto lock = manager.Lock();
    auto v = manager.Value<int>(0);
    auto l = manager.list<int>();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([=] {
            for (int k = 0; k < 25; ++k) {
                std::scoped_lock g(lock);
                v.set(v.get() + 1);
                l.append(t);
            }
        });
    for (auto& t : threads) t.join();
    CHECK(v.get() == 100);
    CHECK(l.size() == 100);
}

TEST_CASE("manager lifetime: start, shutdown, RAII, misuse") {
    int pid = 0;
    {
        mp::SyncManager m;
        CHECK_THROWS_AS((m.dict<int, int>()), mp::ValueError);  // not started
        m.start();
        CHECK_THROWS_AS(m.start(), mp::ProcessError);
        REQUIRE(m.pid().has_value());
        pid = *m.pid();
        auto d = m.dict<int, int>();
        d[1] = 1;
        m.shutdown();
        m.shutdown();  // a second call does nothing
        CHECK(process_ends_within(pid, 0ms));
        auto took = elapsed([&] { CHECK_THROWS_AS(d.get(1), mp::ProcessError); });
        CHECK(took < 2s);
        CHECK_THROWS_AS((m.dict<int, int>()), mp::ValueError);
    }
    {
        auto m = mp::Manager();
        pid = *m.pid();
    }  // the destructor shut it down
    CHECK(process_ends_within(pid, 0ms));
}

TEST_CASE("a manager killed with SIGKILL makes proxy calls fail at once, also a blocked one") {
    auto manager = mp::Manager();
    auto d = manager.dict<int, int>();
    auto q = manager.Queue<int>();
    d[1] = 1;
    auto blocked = std::async(std::launch::async, [q] {
        try {
            q.get();
            return std::string("got an item");
        } catch (const mp::ProcessError& e) {
            return std::string(e.what());
        }
    });
    // The blocked call may not have reached the server yet; either way it must fail promptly.
    ::kill(*manager.pid(), SIGKILL);
    REQUIRE(process_ends_within(*manager.pid(), 10s));
    auto took = elapsed([&] {
        try {
            d.get(1);
            FAIL("a call through a dead manager succeeded");
        } catch (const mp::ProcessError& e) {
            CHECK(std::string(e.what()).find("manager process is gone") != std::string::npos);
        }
        CHECK_THROWS_AS(d.set(2, 2), mp::ProcessError);
        REQUIRE(blocked.wait_for(10s) == std::future_status::ready);
    });
    CHECK(blocked.get().find("manager process is gone") != std::string::npos);
    CHECK(took < 5s);
    // A child using a proxy of the dead manager fails too, rather than hanging.
    mp::Process child([d] { (void)d.size(); });
    child.start();
    child.join();
    CHECK(child.exitcode() == 1);
}

TEST_CASE("the manager process goes away when its owner is killed with SIGKILL") {
    // The orphaned server becomes our child, so that we can reap it (init here may not).
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    auto pipe = mp::Pipe(false);
    auto reader = pipe.first, writer = pipe.second;
    mp::Process owner(
        [](mp::Connection w) {
            auto m = mp::Manager();
            auto d = m.dict<int, int>();
            d[1] = 1;
            w.send(*m.pid());
            for (;;) ::pause();
        },
        writer);
    owner.start();
    writer.close();
    int server = reader.recv<int>();
    auto fd = posix::open_pidfd_or_gone(server);
    REQUIRE(fd);
    owner.kill();
    owner.join();
    CHECK(posix::wait_readable(fd.get(), mp::detail::deadline_after(10s)));
    CHECK(posix::reap(server, true).has_value());
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("a waiter whose client died takes nothing: the lock stays free for the living") {
    auto manager = mp::Manager();
    auto lock = manager.Lock();
    auto about_to_wait = manager.Event();
    lock.acquire();
    mp::Process waiter(
        [](mp::AcquirerProxy lock, mp::EventProxy ev) {
            ev.set();
            lock.acquire();  // blocks at the server until killed
        },
        lock, about_to_wait);
    waiter.start();
    REQUIRE(about_to_wait.wait(10s));
    waiter.kill();
    waiter.join();
    lock.release();
    // The dead client's waiting call must not have taken the lock.
    CHECK(lock.acquire(true, 5s));
    lock.release();
}

TEST_CASE("BaseManager over TCP: a registered type served to two client processes") {
    register_counter();
    auto shared = std::make_shared<Counter>();
    auto pipe = mp::Pipe(false);
    auto reader = pipe.first, writer = pipe.second;
    mp::Process server(
        [shared](mp::Connection w) {
            // The server's registration hands every client the same Counter.
            mp::BaseManager::register_<Counter>(
                "Counter", [shared] { return shared; },
                mp::method("increment", &Counter::increment), mp::method("value", &Counter::value));
            mp::BaseManager m({"127.0.0.1", 0}, "tcp secret");
            auto s = m.get_server();
            w.send(s.address().port());
            s.serve_forever();
        },
        writer);
    server.start();
    writer.close();
    int port = reader.recv<int>();
    mp::Address address("127.0.0.1", port);

    std::vector<mp::Process> clients;
    for (int i = 0; i < 2; ++i)
        clients.emplace_back([address] {
            mp::BaseManager m(address, "tcp secret");
            m.connect();
            auto c = m.create<Counter>();
            for (int k = 0; k < 50; ++k) c.call(&Counter::increment, 1);
        });
    for (auto& c : clients) c.start();
    for (auto& c : clients) c.join();
    for (auto& c : clients) CHECK(c.exitcode() == 0);

    mp::BaseManager m(address, "tcp secret");
    m.connect();
    auto c = m.create<Counter>();
    CHECK(c.call(&Counter::value) == 100);
    CHECK(m.create<Counter>() == c);  // the factory's one object keeps one id

    mp::BaseManager wrong(address, "wrong");
    CHECK_THROWS_AS(wrong.connect(), mp::AuthenticationError);
    CHECK(c.call(&Counter::value) == 100);  // and the server still serves

    server.terminate();
    server.join();
}

TEST_CASE("BaseManager::start serves registered types and refuses unknown ones") {
    register_counter();
    struct Unregistered {
        int f() { return 1; }
    };
    mp::BaseManager m;
    m.start();
    auto c = m.create(Counter(41));
    CHECK(c.call(&Counter::increment, 1) == 42);
    CHECK_THROWS_AS(m.create<Unregistered>(), mp::ValueError);
    m.shutdown();
}

TEST_CASE("hostile clients of a manager never disturb the others") {
    auto manager = mp::Manager();
    auto d = manager.dict<int, int>();
    auto sock = mp::connection::detail::to_socket_address(manager.address());
    std::vector<posix::unique_fd> hostile;
    auto frame = [](std::uint64_t len) {
        std::vector<std::byte> f(64);
        std::memcpy(f.data(), &len, sizeof len);
        return f;
    };
    {
        hostile.push_back(posix::connect_to(sock));  // silent
        hostile.push_back(posix::connect_to(sock));  // an oversized length prefix
        auto f = frame(std::uint64_t(1) << 40);
        REQUIRE(::write(hostile.back().get(), f.data(), f.size()) == 64);
        hostile.push_back(posix::connect_to(sock));  // a truncated message, then silence
        f = frame(100);
        REQUIRE(::write(hostile.back().get(), f.data(), 30) == 30);
        auto gone = posix::connect_to(sock);  // garbage, then a hang-up
        std::vector<unsigned char> junk(500);
        posix::random_bytes(junk.data(), junk.size());
        REQUIRE(::write(gone.get(), junk.data(), junk.size()) == 500);
    }
    for (int i = 0; i < 20; ++i) d[i] = i;
    CHECK(d.size() == 20);
    // An authenticated client sending garbage gets an error reply and carries on.
    auto c =
        mp::connection::Client(manager.address(), std::nullopt, mp::detail::mgr::process_authkey());
    auto conn = mp::detail::mgr::client_upgrade(c, mp::detail::deadline_after(5s));
    conn.send_bytes(std::string("garbage, not a request"));
    auto reply = mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes());
    CHECK_FALSE(reply.ok);
    mp::detail::mgr::request rq{d.id(), mp::detail::mgr::op::dict_get, -1, {}, {}, 0};  // no key
    conn.send_bytes(mp::serialize(rq));
    CHECK_FALSE(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    rq = {12345, mp::detail::mgr::op::len, -1, {}, {}, 0};  // no such object
    conn.send_bytes(mp::serialize(rq));
    CHECK_FALSE(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    rq = {0, mp::detail::mgr::op::create, -1, {std::string(1, '\x7f')}, {}, 0};  // no such kind
    conn.send_bytes(mp::serialize(rq));
    CHECK_FALSE(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    // Reference operations on what does not exist or is not ours change nothing.
    auto id = [](std::uint64_t i) { return mp::detail::mgr::encode(i); };
    rq = {0, mp::detail::mgr::op::incref, -1, {id(12345)}, {}, 0};  // reported missing
    conn.send_bytes(mp::serialize(rq));
    auto increfed = mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes());
    CHECK(increfed.ok);
    CHECK(increfed.values.size() == 2);
    CHECK(increfed.values.back() == id(12345));
    rq = {0, mp::detail::mgr::op::adopt, -1, {id(777), id(12345)}, {}, 0};  // no such ticket
    conn.send_bytes(mp::serialize(rq));
    CHECK_FALSE(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    rq = {0, mp::detail::mgr::op::decref, -1, {id(d.id()), id(12345)}, {}, 0};  // one-way
    conn.send_bytes(mp::serialize(rq));
    rq = {0, mp::detail::mgr::op::create, -1, {mp::detail::mgr::encode(mp::detail::mgr::kind::dict)}, {}, 424242};
    conn.send_bytes(mp::serialize(rq));  // held by a connection that does not exist
    CHECK_FALSE(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    rq = {d.id(), mp::detail::mgr::op::dict_set, -1, {id(1), id(2)}, {99999, d.id()}, 0};  // holds nothing real
    conn.send_bytes(mp::serialize(rq));
    CHECK(mp::deserialize<mp::detail::mgr::reply>(conn.recv_bytes()).ok);
    CHECK(manager.number_of_objects() == 1);
    CHECK(d.at(19) == 19);
}

TEST_CASE("SharedMemoryManager unlinks the segments made through it when it shuts down") {
    auto attachable = [](const std::string& name) {
        try {
            mp::shared_memory::SharedMemory attached(name);
            return true;
        } catch (const std::exception&) {
            return false;
        }
    };
    std::vector<std::string> names;
    bool by_destructor = GENERATE(false, true);
    CAPTURE(by_destructor);
    {
        mp::managers::SharedMemoryManager smm;
        CHECK_THROWS_AS(smm.SharedMemory(8), mp::ValueError);  // not started
        smm.start();
        auto shm = smm.SharedMemory(64);
        auto list = smm.ShareableList<int>({1, 2, 3});
        auto gone = smm.SharedMemory(8);
        gone.unlink();  // already unlinked by its user: shutdown does not mind
        names = {shm.name(), list.shm().name()};
        auto child = mp::Process(
            +[](mp::shared_memory::SharedMemory s, mp::shared_memory::ShareableList<int> l) {
                s.buf()[0] = std::byte{42};
                l[2] = 30;
            },
            shm, list);
        child.start();
        REQUIRE(child.join(20s));
        CHECK(child.exitcode() == 0);
        CHECK(shm.buf()[0] == std::byte{42});
        CHECK(list[2] == 30);
        CHECK(attachable(names[0]));
        CHECK(attachable(names[1]));
        if (!by_destructor) {
            smm.shutdown();
            CHECK_FALSE(attachable(names[0]));
            CHECK_FALSE(attachable(names[1]));
            CHECK(shm.buf()[0] == std::byte{42});  // the mappings stay valid, as in Python
        }
    }
    CHECK_FALSE(attachable(names[0]));
    CHECK_FALSE(attachable(names[1]));
}
