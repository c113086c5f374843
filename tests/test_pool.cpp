// mp::Pool: the Python API, exceptions across processes, worker death, lazy imap, shutdown.
#include <multiprocessing/pool.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <list>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

namespace mp = multiprocessing;
using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
std::string greet(std::string name, int n) { return name + "!" + std::to_string(n); }
int worker_pid(int) { return int(::getpid()); }
void nothing(int) {}

int sleep_then_square(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(x));
    return x * x;
}

int fail_on_three(int x) {
    if (x == 3) throw std::out_of_range("bad input 3");
    return x;
}

struct CustomError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
int custom_failure(int) { throw CustomError("custom"); }

int die_on_five(int x) {
    if (x == 5) ::raise(SIGKILL);
    return x;
}
int segfault_on_two(int x) {
    // SIG_DFL first: a sanitizer's own SIGSEGV handler would turn the death into exit(1).
    if (x == 2) {
        std::signal(SIGSEGV, SIG_DFL);
        ::raise(SIGSEGV);
    }
    return x;
}
int exit_on_four(int x) {
    if (x == 4) std::exit(3);
    return x;
}

int initialized_value = 0;
void init_value(int v) { initialized_value = v; }
int read_initialized(int) { return initialized_value; }
void init_throws() { throw std::invalid_argument("initializer failed"); }

// A function object with state that travels (an aggregate, so it is serializable).
struct Multiplier {
    int factor;
    int operator()(int x) const { return x * factor; }
};

}  // namespace

TEST_CASE("map, apply, apply_async and starmap give Python's results") {
    mp::Pool pool(3);
    CHECK(pool.processes() == 3);
    CHECK(pool.map(square, std::views::iota(0, 10)) ==
          std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});
    CHECK(pool.apply(add, std::tuple{20, 22}) == 42);
    CHECK(pool.apply_async(square, std::tuple{2}).get() == 4);
    CHECK(pool.starmap(add, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}}) ==
          std::vector<int>{3, 7});
    CHECK(pool.starmap(add, std::vector<std::pair<int, int>>{{5, 6}}) == std::vector<int>{11});
    CHECK(pool.apply(greet, std::tuple{"hi", 3}) == "hi!3");
}

TEST_CASE("map accepts any input range and callable kind") {
    mp::Pool pool(2);
    std::list<int> lst{1, 2, 3};
    CHECK(pool.map(square, lst) == std::vector<int>{1, 4, 9});
    auto odd = std::views::iota(0, 10) | std::views::filter([](int x) { return x % 2; });
    CHECK(pool.map(square, odd) == std::vector<int>{1, 9, 25, 49, 81});
    CHECK(pool.map(square, std::vector<int>{}).empty());
    CHECK(pool.map([](int x) { return x + 1; }, std::vector{1, 2}) == std::vector<int>{2, 3});
    CHECK(pool.map(Multiplier{3}, std::vector{1, 2}) == std::vector<int>{3, 6});
    CHECK(pool.map(square, std::views::iota(0, 100), 7) == pool.map(square, std::views::iota(0, 100)));
    CHECK(pool.map(nothing, std::vector{1, 2}).size() == 2);  // void: a list of None
    CHECK_THROWS_AS(pool.map(square, std::vector{1}, 0), mp::ValueError);
    // Contiguous plain data moves in bulk and comes back whole.
    std::vector<int> big(200'000);
    std::iota(big.begin(), big.end(), 0);
    auto out = pool.map([](int x) { return x % 1000; }, big);
    REQUIRE(out.size() == big.size());
    CHECK(out[199'999] == 999);
}

TEST_CASE("AsyncResult: get with a timeout, wait, ready, successful, callbacks") {
    mp::Pool pool(2);
    // Slow enough that a loaded machine cannot finish it between the checks.
    auto slow = pool.apply_async(sleep_then_square, std::tuple{1500});
    CHECK_THROWS_AS(slow.get(10ms), mp::TimeoutError);
    CHECK_FALSE(slow.wait(0.01));
    CHECK_FALSE(slow.ready());
    CHECK_THROWS_AS(slow.successful(), mp::ValueError);
    CHECK(slow.get(30s) == 2250000);
    CHECK(slow.ready());
    CHECK(slow.successful());

    std::atomic<int> seen{0};
    std::atomic<bool> error_seen{false};
    auto r = pool.map_async(square, std::vector{1, 2, 3}, std::nullopt,
                            [&](const std::vector<int>& v) { seen = v[2]; });
    r.wait();
    CHECK(r.get() == std::vector<int>{1, 4, 9});
    CHECK(seen == 9);
    auto e = pool.apply_async(fail_on_three, std::tuple{3}, nullptr,
                              [&](const std::exception& ex) { error_seen = std::string(ex.what()) == "bad input 3"; });
    e.wait();
    CHECK_FALSE(e.successful());
    CHECK(error_seen);
}

TEST_CASE("a task's exception reaches the parent with its type; the other tasks are unaffected") {
    mp::Pool pool(2);
    CHECK_THROWS_MATCHES(pool.map(fail_on_three, std::views::iota(0, 5)), std::out_of_range,
                         Catch::Message("bad input 3"));
    try {
        pool.apply(custom_failure, std::tuple{1});
        FAIL("no exception");
    } catch (const mp::RemoteError& e) {
        CHECK_THAT(e.type_name(), Catch::Contains("CustomError"));
        CHECK(e.message() == "custom");
    }
    auto ok = pool.apply_async(square, std::tuple{7});
    auto bad = pool.apply_async(fail_on_three, std::tuple{3});
    CHECK(ok.get() == 49);
    CHECK_THROWS_AS(bad.get(), std::out_of_range);
    CHECK(pool.map(square, std::vector{2}) == std::vector<int>{4});
}

TEST_CASE("a worker killed in the middle of a task fails that task, and the pool carries on") {
    mp::Pool pool(2);
    auto before = pool.worker_pids();
    SECTION("SIGKILL") {
        CHECK_THROWS_WITH(pool.map(die_on_five, std::views::iota(0, 10), 1),
                          Catch::Contains("killed by signal SIGKILL"));
    }
    SECTION("a segfault") {
        CHECK_THROWS_WITH(pool.apply(segfault_on_two, std::tuple{2}), Catch::Contains("SIGSEGV"));
    }
    SECTION("exit() inside a task") {
        auto results = pool.map_async(exit_on_four, std::views::iota(0, 8), 1);
        CHECK_THROWS_WITH(results.get(30s), Catch::Contains("exited with code 3"));
    }
    // Other tasks complete, and a replacement worker keeps the pool at full size.
    auto pids = pool.map(worker_pid, std::views::iota(0, 40), 1);
    CHECK(pool.worker_pids().size() == 2);
    CHECK(pool.worker_pids() != before);
    CHECK(pool.map(square, std::vector{3, 4}) == std::vector<int>{9, 16});
}

TEST_CASE("the other tasks of a map whose worker died still complete") {
    mp::Pool pool(2);
    std::vector<mp::AsyncResult<int>> results;
    for (int i = 0; i < 10; ++i) results.push_back(pool.apply_async(die_on_five, std::tuple{i}));
    int ok = 0, failed = 0;
    for (auto& r : results) {
        try {
            r.get(30s);
            ++ok;
        } catch (const mp::ProcessError&) {
            ++failed;
        }
    }
    CHECK(failed == 1);
    CHECK(ok == 9);
}

TEST_CASE("maxtasksperchild replaces workers; initializer runs once in each") {
    mp::Pool pool({.processes = 2, .initializer = init_value, .initargs = std::tuple{42},
                   .maxtasksperchild = 1});
    CHECK(pool.map(read_initialized, std::views::iota(0, 4), 1) == std::vector<int>{42, 42, 42, 42});
    auto pids = pool.map(worker_pid, std::views::iota(0, 6), 1);
    CHECK(std::set<int>(pids.begin(), pids.end()).size() == 6);
    pool.close();
    pool.join();
}

TEST_CASE("the positional Python form of the constructor") {
    mp::Pool pool(2, init_value, std::tuple{7});
    CHECK(pool.apply(read_initialized, std::tuple{0}) == 7);
}

TEST_CASE("an initializer that throws is reported, not retried forever") {
    mp::Pool pool({.processes = 2, .initializer = init_throws});
    CHECK_THROWS_MATCHES(pool.map(square, std::vector{1, 2, 3}), std::invalid_argument,
                         Catch::Message("initializer failed"));
    CHECK_THROWS_AS(pool.apply(square, std::tuple{1}), std::invalid_argument);
}

TEST_CASE("initargs that do not match the initializer are a clear error") {
    CHECK_THROWS_WITH(mp::Pool({.processes = 1, .initializer = init_value,
                                .initargs = std::tuple{"text"}}),
                      Catch::Contains("do not match the initializer"));
    CHECK_THROWS_AS(mp::Pool(0), mp::ValueError);
    CHECK_THROWS_AS(mp::Pool({.processes = -1}), mp::ValueError);
}

TEST_CASE("imap and imap_unordered yield results as they arrive, with next(timeout)") {
    mp::Pool pool(2);
    std::vector<int> ordered;
    for (int v : pool.imap(square, std::views::iota(0, 6), 2)) ordered.push_back(v);
    CHECK(ordered == std::vector<int>{0, 1, 4, 9, 16, 25});
    std::multiset<int> unordered;
    for (int v : pool.imap_unordered(square, std::views::iota(0, 6))) unordered.insert(v);
    CHECK(unordered == std::multiset<int>{0, 1, 4, 9, 16, 25});

    // imap_unordered hands over the quick result before the slow one.
    auto it = pool.imap_unordered(sleep_then_square, std::vector{1500, 1});
    CHECK(it.next(30s) == 1);
    CHECK(it.next(30s) == 2250000);
    CHECK_FALSE(it.next(30s));

    auto slow = pool.imap(sleep_then_square, std::vector{1500});
    CHECK_THROWS_AS(slow.next(10ms), mp::TimeoutError);
    CHECK(slow.next() == 2250000);
    CHECK_FALSE(slow.next());

    auto failing = pool.imap(fail_on_three, std::views::iota(0, 5));
    CHECK(failing.next() == 0);
    CHECK(failing.next() == 1);
    CHECK(failing.next() == 2);
    CHECK_THROWS_AS(failing.next(), std::out_of_range);
    CHECK(failing.next() == 4);
}

TEST_CASE("imap pulls an endless input lazily, in bounded memory") {
    mp::Pool pool(2);
    long pulled = 0;
    auto counted = std::views::iota(0) | std::views::transform([&pulled](int x) {
                       ++pulled;
                       return x;
                   });
    long sum = 0, n = 0;
    for (int v : pool.imap(square, counted, 4)) {
        sum += v;
        if (++n == 100) break;
    }
    CHECK(sum == 328350);
    // The look-ahead is a few chunks per worker, not the whole (endless) input.
    CHECK(pulled >= 100);
    CHECK(pulled <= 100 + 4 * 4 * 2 + 4);
}

TEST_CASE("terminate makes pending results raise; a closed pool refuses work") {
    mp::Pool pool(1);
    auto pending = pool.apply_async(sleep_then_square, std::tuple{5000});
    auto queued = pool.apply_async(square, std::tuple{3});
    pool.terminate();
    CHECK_THROWS_WITH(pending.get(30s), Catch::Contains("terminated"));
    CHECK_THROWS_WITH(queued.get(30s), Catch::Contains("terminated"));
    CHECK_THROWS_AS(pool.apply(square, std::tuple{1}), mp::ValueError);

    mp::Pool other(1);
    CHECK_THROWS_WITH(other.join(), "Pool is still running");
    other.close();
    CHECK_THROWS_WITH(other.map(square, std::vector{1}), "Pool not running");
    other.join();
}

TEST_CASE("close and join wait for the work already given") {
    mp::Pool pool(2);
    auto r = pool.map_async(sleep_then_square, std::vector{50, 60, 70});
    pool.close();
    pool.join();
    CHECK(r.ready());
    CHECK(r.get() == std::vector<int>{2500, 3600, 4900});
}

TEST_CASE("the destructor terminates, as Python's with-block does") {
    std::optional<mp::AsyncResult<int>> r;
    {
        mp::Pool pool(1);
        r = pool.apply_async(sleep_then_square, std::tuple{5000});
    }
    CHECK_THROWS_WITH(r->get(30s), Catch::Contains("terminated"));
}
