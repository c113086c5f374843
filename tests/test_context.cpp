// Contexts and start methods: set/get, spawn's fresh image, the fork-bomb guard, forkserver.
#include <multiprocessing.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ranges>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"

namespace mp = multiprocessing;
using test::gone_within;
using namespace std::chrono_literals;

namespace {

struct shared_int {
    std::atomic<int> value{0};
};
using shared = mp::detail::shared_object<shared_int>;

int global_marker = 1;  // changed by the parent before start: spawn must not see the change

void report_marker(shared s) { s->value = global_marker; }
void report_method(shared s) {
    auto m = mp::get_start_method();
    s->value = m == "spawn" ? 1 : m == "forkserver" ? 2 : m == "fork" ? 3 : -1;
}
void publish_pid_and_wait(shared s) {
    test::publish(s->value, ::getpid());
    for (;;) ::pause();
}
void start_forkserver_daemon_then_wait(shared s) {
    auto p = mp::get_context("forkserver").Process({.daemon = true}, publish_pid_and_wait, s);
    p.start();
    for (;;) ::pause();
}
int square(int x) { return x * x; }
void nothing() {}


}  // namespace

TEST_CASE("set_start_method, get_start_method and get_all_start_methods follow Python") {
    CHECK(mp::get_all_start_methods() == std::vector<std::string>{"fork", "spawn", "forkserver"});
    CHECK_FALSE(mp::get_start_method(true));
    mp::set_start_method("spawn");
    CHECK(mp::get_start_method() == "spawn");
    CHECK_THROWS_WITH(mp::set_start_method("fork"), "context has already been set");
    mp::set_start_method("forkserver", true);
    CHECK(mp::get_start_method() == "forkserver");
    CHECK_THROWS_WITH(mp::set_start_method("thread", true),
                      Catch::Contains("'fork', 'spawn' and 'forkserver'"));
    CHECK_THROWS_AS(mp::get_context("nope"), mp::ValueError);
    mp::set_start_method(std::nullopt, true);
    CHECK_FALSE(mp::get_start_method(true));
    // Asking without allow_none fixes the default, as in Python.
    CHECK(mp::get_start_method() == "fork");
    CHECK_THROWS_AS(mp::set_start_method("spawn"), mp::ValueError);
}

TEST_CASE("a context's processes use its method; a child inherits it") {
    for (const char* method : {"fork", "spawn", "forkserver"}) {
        auto ctx = mp::get_context(method);
        CHECK(ctx.get_start_method() == method);
        auto s = shared::create();
        auto p = ctx.Process(report_method, s);
        CHECK(p.start_method() == method);
        p.start();
        p.join();
        CHECK(p.exitcode() == 0);
        int expected = std::string(method) == "spawn" ? 1 : std::string(method) == "forkserver" ? 2 : 3;
        // A fork child sees whatever the parent had; spawn and forkserver children are told.
        if (expected != 3) CHECK(s->value == expected);
    }
}

TEST_CASE("spawn starts a fresh image: nothing of the parent's memory is inherited") {
    global_marker = 42;
    auto s = shared::create();
    auto p = mp::get_context("spawn").Process(report_marker, s);
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(s->value == 1);  // the value the program starts with, not the parent's 42
    auto f = mp::get_context("fork").Process(report_marker, s);
    f.start();
    f.join();
    CHECK(s->value == 42);
    global_marker = 1;
}

TEST_CASE("a target that cannot travel fails clearly at start under spawn") {
    mp::Process p([] {});
    p.start_method("spawn");
    CHECK_NOTHROW(p.start());  // a captureless lambda travels
    p.join();
    int captured = 1;
    mp::Process q([captured] { (void)captured; });
    q.start_method("spawn");
    CHECK_THROWS_WITH(q.start(), Catch::Contains("cannot be started with 'spawn'"));
}

TEST_CASE("a spawned child that does not run the bootstrap is an error at start, not a fork bomb") {
    // Simulates an executable without the library's entry point: the child runs main() again.
    // It must neither hang the parent nor spawn on its own (the guard refuses), and start()
    // reports what happened.
    ::setenv(mp::detail::skip_bootstrap_env, "1", 1);
    auto p = mp::get_context("spawn").Process(nothing);
    // Exit code 3: the child's main() tried to spawn and the guard refused (tests/catch_main.cpp).
    CHECK_THROWS_WITH(p.start(), Catch::Contains("did not reach the library's bootstrap and "
                                                 "exited with 3"));
    ::unsetenv(mp::detail::skip_bootstrap_env);
    CHECK(mp::active_children().empty());
}

TEST_CASE("a Pool and an executor under each start method") {
    for (const char* method : {"fork", "spawn", "forkserver"}) {
        auto pool = mp::get_context(method).Pool(2);
        CHECK(pool.map(square, std::views::iota(0, 5)) == std::vector<int>{0, 1, 4, 9, 16});
    }
}

namespace {
void add_raw(mp::RawValue<int> v, mp::RawArray<int> a, mp::DictProxy<int, int> d) {
    v.value() += 1;
    a[1] += 1;
    d[1] = 2;
}
}  // namespace

TEST_CASE("a context's RawValue, RawArray and Manager") {
    for (const char* method : {"fork", "spawn", "forkserver"}) {
        CAPTURE(method);
        auto ctx = mp::get_context(method);
        auto v = ctx.RawValue<int>(41);
        auto a = ctx.RawArray<int>(std::vector{1, 2, 3});
        auto m = ctx.Manager();
        auto d = m.dict<int, int>();
        auto p = ctx.Process(add_raw, v, a, d);
        p.start();
        REQUIRE(test::finish(p) == 0);
        CHECK(v.value() == 42);
        CHECK(a[1] == 3);
        CHECK(d.at(1) == 2);
    }
}

TEST_CASE("the forkserver goes away with a parent killed by SIGKILL, and its daemons with it") {
    auto s = shared::create();
    mp::Process middle(start_forkserver_daemon_then_wait, s);
    middle.start();
    int grandchild = test::wait_published(s->value, 20s);
    REQUIRE(grandchild != 0);
    middle.kill();
    middle.join();
    CHECK(gone_within(grandchild, 10000));
}
