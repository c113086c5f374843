// concurrent.futures: ProcessPoolExecutor, Future, as_completed, wait, BrokenProcessPool.
#include <multiprocessing/futures.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace mp = multiprocessing;
namespace fu = multiprocessing::futures;
using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}
int fail(int) { throw std::length_error("too long"); }
int die(int) {
    ::raise(SIGKILL);
    return 0;
}
int init_value = 0;
void init(int v) { init_value = v; }
int get_init(int) { return init_value; }

}  // namespace

TEST_CASE("submit returns a Future with Python's methods") {
    fu::ProcessPoolExecutor ex(2);
    auto f = ex.submit(add, 20, 22);
    CHECK(f.result() == 42);
    CHECK(f.done());
    CHECK_FALSE(f.running());
    CHECK_FALSE(f.cancelled());
    CHECK(f.exception() == nullptr);
    CHECK_FALSE(f.cancel());  // done: too late

    auto slow = ex.submit(sleep_ms, 1500);
    CHECK_THROWS_AS(slow.result(10ms), mp::TimeoutError);
    CHECK_THROWS_AS(slow.exception(0.01), mp::TimeoutError);
    CHECK(slow.result(30s) == 1500);

    auto bad = ex.submit(fail, 1);
    CHECK_THROWS_AS(bad.result(), std::length_error);
    CHECK(bad.exception() != nullptr);

    // As in Python, done callbacks run after the waiters are woken: wait for the callback itself.
    std::promise<int> seen;
    auto cb = ex.submit(square, 5);
    cb.add_done_callback([&](fu::Future<int>& done) { seen.set_value(done.result()); });
    auto seen_value = seen.get_future();
    REQUIRE(seen_value.wait_for(30s) == std::future_status::ready);
    CHECK(seen_value.get() == 25);
    // A callback added to a done future runs at once, in the caller.
    int at_once = 0;
    cb.add_done_callback([&](fu::Future<int>& done) { at_once = done.result(); });
    CHECK(at_once == 25);
}

TEST_CASE("a future waiting for a worker can be cancelled; a running one cannot") {
    fu::ProcessPoolExecutor ex(1);
    // One worker, max_workers + 1 calls in flight: the rest wait, cancellable.
    std::vector<fu::Future<int>> fs;
    for (int i = 0; i < 6; ++i) fs.push_back(ex.submit(sleep_ms, 100));
    CHECK(fs.back().cancel());
    CHECK(fs.back().cancelled());
    CHECK(fs.back().done());
    CHECK_THROWS_AS(fs.back().result(), fu::CancelledError);
    CHECK_THROWS_AS(fs.back().exception(), fu::CancelledError);
    CHECK_FALSE(fs.front().cancel());
    CHECK(fs.front().result(30s) == 100);
}

TEST_CASE("map is lazy, ordered, and honours its timeout") {
    fu::ProcessPoolExecutor ex(2);
    std::vector<int> out;
    for (int v : ex.map(square, std::views::iota(0, 5))) out.push_back(v);
    CHECK(out == std::vector<int>{0, 1, 4, 9, 16});
    out.clear();
    for (int v : ex.map(square, std::views::iota(0, 50), std::nullopt, 7)) out.push_back(v);
    CHECK(out.size() == 50);
    CHECK(out[49] == 2401);
    auto slow = ex.map(sleep_ms, std::vector{2000}, 0.05);
    CHECK_THROWS_AS(slow.begin(), mp::TimeoutError);
}

TEST_CASE("as_completed yields futures as they finish, with a timeout") {
    fu::ProcessPoolExecutor ex(2);
    std::vector<fu::Future<int>> fs{ex.submit(sleep_ms, 400), ex.submit(sleep_ms, 1)};
    std::vector<int> order;
    for (auto& f : fu::as_completed(fs)) order.push_back(f.result());
    CHECK(order == std::vector<int>{1, 400});

    std::vector<fu::Future<int>> slow{ex.submit(sleep_ms, 600)};
    fu::as_completed pending(slow, 0.05);
    CHECK_THROWS_WITH(pending.begin(), Catch::Contains("1 (of 1) futures unfinished"));
}

TEST_CASE("wait with FIRST_COMPLETED, FIRST_EXCEPTION and ALL_COMPLETED") {
    fu::ProcessPoolExecutor ex(2);
    std::vector<fu::Future<int>> fs{ex.submit(sleep_ms, 1), ex.submit(sleep_ms, 600)};
    auto first = fu::wait(fs, 30.0, fu::FIRST_COMPLETED);
    CHECK(first.done.size() >= 1);
    std::vector<fu::Future<int>> failing{ex.submit(fail, 0), ex.submit(sleep_ms, 600)};
    auto exc = fu::wait(failing, 30.0, fu::FIRST_EXCEPTION);
    CHECK(exc.done.size() >= 1);
    CHECK(exc.not_done.size() <= 1);
    auto all = fu::wait(fs);
    CHECK(all.done.size() == 2);
    CHECK(all.not_done.empty());
    std::vector<fu::Future<int>> slow{ex.submit(sleep_ms, 600)};
    auto timed_out = fu::wait(slow, 0.05);
    CHECK(timed_out.not_done.size() == 1);
}

TEST_CASE("a worker that dies breaks the pool, as Python's BrokenProcessPool") {
    fu::ProcessPoolExecutor ex(2);
    auto f = ex.submit(die, 0);
    CHECK_THROWS_AS(f.result(30s), fu::BrokenProcessPool);
    CHECK_THROWS_AS(ex.submit(square, 1), fu::BrokenProcessPool);
}

TEST_CASE("initializer, max_tasks_per_child, shutdown") {
    fu::ProcessPoolExecutor ex({.max_workers = 2, .initializer = init, .initargs = std::tuple{9},
                                .max_tasks_per_child = 1});
    CHECK(ex.submit(get_init, 0).result() == 9);
    CHECK(ex.submit(get_init, 0).result() == 9);
    ex.shutdown();
    CHECK_THROWS_AS(ex.submit(square, 1), std::runtime_error);
    CHECK_THROWS_AS(fu::ProcessPoolExecutor(0), mp::ValueError);
}

TEST_CASE("shutdown with cancel_futures cancels the calls still waiting") {
    fu::ProcessPoolExecutor ex(1);
    std::vector<fu::Future<int>> fs;
    for (int i = 0; i < 8; ++i) fs.push_back(ex.submit(sleep_ms, 50));
    ex.shutdown(true, true);
    CHECK(fs.back().cancelled());
    CHECK(fs.front().result() == 50);
}
