// A manager's objects are freed when the last proxy of them goes, in whichever process it lived
// (Python's proxy reference counting), and when a process holding proxies dies, even by SIGKILL.
// Each way a proxy crosses into another process is covered: a Process argument (fork: a
// connection made for the child before the fork; spawn and forkserver: one in the start
// record), a message (a ticket), a Pool's tasks and results, and a proxy stored in another
// manager object. Runs under every start method (tests/CMakeLists.txt).
#include <multiprocessing.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;
using Dict = mp::DictProxy<int, int>;

namespace {

// The server drops what a connection held when it sees the connection close, which it does on
// its own time: the count is asked again (each ask is a round trip) until it is `n`.
bool objects_become(mp::SyncManager& m, std::size_t n, std::chrono::seconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (m.number_of_objects() == n) return true;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
}

// Resident memory of a process, in bytes (/proc/<pid>/statm).
std::size_t resident_bytes(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/statm");
    std::size_t pages = 0, resident = 0;
    f >> pages >> resident;
    return resident * std::size_t(::sysconf(_SC_PAGESIZE));
}

// In a child: uses the dict, says so, waits until the parent has dropped its proxy, uses the
// dict again (it must still be there), and waits to be let go (or killed).
void hold_dict(Dict d, mp::Event ready, mp::Event dropped, mp::Event finish) {
    d[1] = 1;
    ready.set();
    test::check(dropped.wait(20s), "the parent never dropped its proxy");
    test::check(d.at(1) == 1 && d.size() == 1, "the dict went while this child held it");
    d[2] = 2;
    test::check(finish.wait(20s), "never let go");
}

void receive_dict(mp::Queue<Dict> q, mp::Queue<int> out) {
    auto d = q.get(20s);
    out.put(d.at(5));
}

Dict touch(Dict d) {
    d[0] = d.get(0, 0) + 1;
    return d;
}

}  // namespace

TEST_CASE("an object lives while a child holds a proxy of it, and goes with the last holder") {
    bool killed = GENERATE(false, true);
    CAPTURE(mp::get_start_method(), killed);
    auto m = mp::Manager();
    mp::Event ready, dropped, finish;
    auto d = m.dict<int, int>();
    auto p = test::start(hold_dict, d, ready, dropped, finish);
    REQUIRE(ready.wait(20s));
    d = Dict();  // the parent's last proxy (Process keeps no copy of its arguments once started)
    CHECK(m.number_of_objects() == 1);
    dropped.set();
    if (killed) {
        // The child holds the dict when it dies: its connection closes, the server drops it.
        REQUIRE(objects_become(m, 1));
        p.kill();
        REQUIRE(p.join(20s));
        CHECK(p.exitcode() == -SIGKILL);
    } else {
        finish.set();
        CHECK(test::finish(p) == 0);
    }
    CHECK(objects_become(m, 0));
}

TEST_CASE("a proxy in a message keeps its object until the receiver takes it over") {
    auto m = mp::Manager();
    mp::Queue<Dict> q;
    mp::Queue<int> out;
    {
        auto d = m.dict<int, int>();
        d[5] = 55;
        q.put(d);
    }  // gone here before anybody received it: the message's ticket holds the dict
    CHECK(m.number_of_objects() == 1);
    auto p = test::start(receive_dict, q, out);
    CHECK(out.get(20s) == 55);
    CHECK(test::finish(p) == 0);
    CHECK(objects_become(m, 0));

    // The same bytes decoded twice: the first takes the ticket over, the second increfs. Once
    // every proxy is gone, decoding them again is an error that says what happened.
    auto d = m.dict<int, int>();
    auto bytes = mp::serialize(d);
    {
        auto a = mp::deserialize<Dict>(bytes);
        auto b = mp::deserialize<Dict>(bytes);
        d = Dict();
        CHECK(a == b);
        a[1] = 2;
        CHECK(b.at(1) == 2);
    }
    CHECK(objects_become(m, 0));
    CHECK_THROWS_WITH(mp::deserialize<Dict>(bytes), Catch::Contains("no object with id"));
}

TEST_CASE("proxies as Pool task arguments and results leave nothing behind") {
    auto m = mp::Manager();
    {
        std::vector<Dict> dicts;
        for (int i = 0; i < 20; ++i) dicts.push_back(m.dict<int, int>());
        mp::Pool pool({.processes = 2});
        auto back = pool.map(touch, dicts);
        REQUIRE(back.size() == dicts.size());
        for (std::size_t i = 0; i < dicts.size(); ++i) {
            CHECK(back[i] == dicts[i]);
            CHECK(back[i].at(0) == 1);
        }
        pool.close();
        pool.join();
        CHECK(m.number_of_objects() == 20);
    }
    CHECK(objects_become(m, 0));
}

TEST_CASE("a proxy stored in a manager object is held by it while it lives") {
    auto m = mp::Manager();
    auto l = m.list<Dict>();
    auto q = m.Queue<Dict>();
    {
        auto d = m.dict<int, int>();
        d[1] = 10;
        l.append(d);
        q.put(d);
        auto e = m.dict<int, int>();
        auto named = m.dict<int, Dict>(std::vector<std::pair<int, Dict>>{{1, e}});
        named.at(1)[3] = 30;
    }  // `named` and `e` go; `d` stays, held by the list and the queue
    CHECK(objects_become(m, 3));
    CHECK(l.get(0).at(1) == 10);
    l = mp::ListProxy<Dict>();
    CHECK(objects_become(m, 2));
    auto d = q.get(5s);
    q = mp::QueueProxy<Dict>();
    CHECK(d.at(1) == 10);
    d = Dict();
    CHECK(objects_become(m, 0));
}

TEST_CASE("a Namespace holds the proxies set on it; a query holds nothing") {
    auto m = mp::Manager();
    auto ns = m.Namespace();
    {
        auto d = m.dict<int, int>();
        d[1] = 1;
        ns.set("d", d);
    }
    { auto once = ns.get<Dict>("d"); }  // its last copy out there goes: the Namespace holds it
    CHECK(objects_become(m, 2));
    CHECK(ns.get<Dict>("d").at(1) == 1);
    auto l = m.list<Dict>();
    {
        auto tmp = m.dict<int, int>();
        CHECK_FALSE(l.contains(tmp));
        CHECK(l.count(tmp) == 0);
    }
    CHECK(objects_become(m, 3));  // the namespace, its dict, the list: not the queried one
    // Another manager's proxy cannot be held by this one: said at once.
    auto other = mp::Manager();
    auto foreign = other.dict<int, int>();
    CHECK_THROWS_AS(l.append(foreign), mp::ValueError);
    CHECK_THROWS_AS(ns.set("f", foreign), mp::ValueError);
    CHECK(l.empty());
    CHECK(other.number_of_objects() == 1);
}

// A proxy that lives until the program ends: its decref comes after this thread's thread_locals
// are gone, when its manager is gone too (the sanitizers watch this).
Dict kept_until_exit;

TEST_CASE("a proxy kept until the program ends goes quietly") {
    auto m = mp::Manager();
    kept_until_exit = m.dict<int, int>();
    kept_until_exit[1] = 1;
    CHECK(kept_until_exit.size() == 1);
}

TEST_CASE("threads making and dropping proxies of one object keep exactly one reference") {
    auto m = mp::Manager();
    auto d = m.dict<int, int>();
    auto bytes = mp::serialize(d);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&m, &d, t] {
            for (int k = 0; k < 200; ++k) {
                auto copy = mp::deserialize<Dict>(mp::serialize(d));
                copy[t] = k;
                auto other = m.dict<int, int>();  // made and dropped
            }
        });
    for (auto& t : threads) t.join();
    CHECK(objects_become(m, 1));
    CHECK(d.size() == 4);
    CHECK(mp::deserialize<Dict>(bytes) == d);
}

TEST_CASE("a manager that makes and drops 1,000,000 proxies stays in bounded memory", "[fork]") {
    // The sanitizers make each round trip several times slower: a tenth of the proxies there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    constexpr int n = 100'000;
#else
    constexpr int n = 1'000'000;
#endif
    auto m = mp::Manager();
    auto pid = *m.pid();
    auto keep = m.list<int>({1, 2, 3});
    std::size_t before = 0;
    for (int i = 0; i < n; ++i) {
        auto d = m.dict<int, int>();
        if (i % 1000 == 0) d[i] = i;
        if (i == n / 10) before = resident_bytes(pid);
    }
    REQUIRE(objects_become(m, 1));
    auto after = resident_bytes(pid);
    CAPTURE(before, after);
    // A million dicts kept would be hundreds of MiB; what a freed one leaves is nothing.
    // (ASan keeps freed memory in quarantine, so resident size says nothing there.)
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(after < before + (std::size_t(16) << 20));
#endif
    CHECK(keep.to_vector() == std::vector<int>{1, 2, 3});
}
