// mp::Process under fork: lifecycle, exit codes, signals, misuse, exit behaviour.
#include <multiprocessing.hpp>
#include <multiprocessing/detail/posix/shm.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include <fmt/format.h>

namespace mp = multiprocessing;
using test::gone_within;
using namespace std::chrono_literals;

namespace {

// A counter in shared memory, to see what a child did.
struct shared_int {
    std::atomic<int> value{0};
    std::atomic<int> other{0};
};
using shared_ints = mp::detail::shared_object<shared_int>;

void set_value(shared_ints s, int v) { s->value = v; }

// Blocks until the parent bumps `other` (a futex-free handshake: the test asserts on it).
void wait_for_release(shared_ints s) {
    while (s->other.load() == 0) mp::detail::posix::futex_wait(
        reinterpret_cast<std::atomic<std::uint32_t>*>(&s->other), 0, mp::detail::deadline_after(std::chrono::seconds(20)));
}
void release(shared_ints s) {
    s->other = 1;
    mp::detail::posix::futex_wake_all(reinterpret_cast<std::atomic<std::uint32_t>*>(&s->other));
}

void throw_invalid_argument() { throw std::invalid_argument("bad thing"); }

void try_to_start_a_child(shared_ints s) {
    mp::Process child([] {});
    if (!child.daemon()) return;  // inherits daemon from the current process, as in Python
    try {
        child.start();
    } catch (const mp::ValueError& e) {
        if (std::string(e.what()) == "daemonic processes are not allowed to have children")
            s->value = 1;
    }
}

void check_identity(shared_ints s, int parent) {
    auto& me = mp::current_process();
    auto* par = mp::parent_process();
    bool ok = me.name() == "kid" && me.pid() == ::getpid() && par && par->pid() == parent &&
              par->name() == "MainProcess" && par->is_alive();
    // A grandchild's default name extends the child's identity: Process-N:1.
    mp::Process grandchild([] {});
    ok = ok && grandchild.name().ends_with(":1");
    s->value = ok ? 1 : -1;
}

void add_bit(shared_ints s, int i) { s->value.fetch_add(1 << i); }

void count_cpus_on_one(shared_ints s) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ::sched_setaffinity(0, sizeof one, &one);
    s->value = mp::process_cpu_count();
}

void daemon_publishes_pid(shared_ints s) {
    test::publish(s->other, ::getpid());
    for (;;) ::pause();
}

void regular_waits_for_daemon(shared_ints s) {
    while (s->other.load() == 0) std::this_thread::yield();
    s->value = 1;  // proves it ran to completion before its parent exited
}

void start_both_then_exit(shared_ints s) {
    mp::Process daemon({.daemon = true}, daemon_publishes_pid, s);
    mp::Process regular(regular_waits_for_daemon, s);
    daemon.start();
    while (s->other.load() == 0) std::this_thread::yield();
    regular.start();
    std::exit(0);
}

void set_five(shared_ints s) { s->value = 5; }

void start_and_forget(shared_ints s) {
    mp::Process regular(set_five, s);
    regular.start();
}  // destroyed unjoined: joined when this process leaves

void start_daemon_then_wait(shared_ints s) {
    mp::Process daemon({.daemon = true}, daemon_publishes_pid, s);
    daemon.start();
    for (;;) ::pause();
}

// Sends the authkey this process has, then the one a child of its own has.
void report_authkey(mp::Connection c) {
    c.send(mp::current_process().authkey());
    mp::Process grandchild([](mp::Connection c2) { c2.send(mp::current_process().authkey()); }, c);
    grandchild.start();
    grandchild.join();
}

// Reads everything from a pipe until EOF.
std::string drain(int fd) {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, std::size_t(n));
    return out;
}

}  // namespace

TEST_CASE("a target runs in a child with its arguments") {
    auto s = shared_ints::create();
    mp::Process p(set_value, s, 42);
    p.start();
    p.join();
    CHECK(s->value == 42);
    CHECK(p.exitcode() == 0);
    CHECK_FALSE(p.is_alive());
}

TEST_CASE("any callable: lambdas with captures, move-only arguments, function objects", "[fork]") {
    auto s = shared_ints::create();
    auto owned = std::make_unique<int>(5);
    mp::Process p([s](std::unique_ptr<int>& v) { s->value = *v * 2; }, std::move(owned));
    p.start();
    p.join();
    CHECK(s->value == 10);

    struct functor {
        shared_ints s;
        void operator()(int x) const { s->value = x + 1; }
    };
    mp::Process q(functor{s}, 99);
    q.start();
    q.join();
    CHECK(s->value == 100);
}

struct Doubler : mp::Process {
    shared_ints s;
    int x;
    Doubler(shared_ints s_, int x_) : s(s_), x(x_) {}
    void run() override { s->value = 2 * x; }
};

TEST_CASE("a subclass overrides run()", "[fork]") {
    auto s = shared_ints::create();
    Doubler d(s, 21);
    d.start();
    d.join();
    CHECK(s->value == 42);
    CHECK(fmt::format("{}", d).starts_with("<Doubler name='Process-"));
}

TEST_CASE("run() called directly runs in the calling process") {
    int local = 0;
    mp::Process p([&local] { local = 7; });
    p.run();
    CHECK(local == 7);
    CHECK_FALSE(p.exitcode());
}

TEST_CASE("exitcode follows Python") {
    SECTION("nullopt before start and while running") {
        auto s = shared_ints::create();
        mp::Process p(wait_for_release, s);
        CHECK_FALSE(p.exitcode());
        p.start();
        CHECK_FALSE(p.exitcode());
        CHECK(p.is_alive());
        release(s);
        p.join();
        CHECK(p.exitcode() == 0);
    }
    SECTION("the code passed to exit") {
        mp::Process p([] { std::exit(7); });
        p.start();
        p.join();
        CHECK(p.exitcode() == 7);
        mp::Process q([] { ::_exit(3); });
        q.start();
        q.join();
        CHECK(q.exitcode() == 3);
    }
    SECTION("-N when killed by signal N") {
        // SIG_DFL first: a sanitizer's own SIGSEGV handler would turn the death into exit(1).
        mp::Process p([] {
            std::signal(SIGSEGV, SIG_DFL);
            std::raise(SIGSEGV);
        });
        p.start();
        p.join();
        CHECK(p.exitcode() == -SIGSEGV);
    }
    SECTION("1 when the target throws, with the report on stderr") {
        mp::detail::posix::unique_fd r, w;
        mp::detail::posix::make_pipe(r, w);
        // The pipe's write end becomes the child's stderr before the start (inherited by every
        // start method), then the parent restores its own.
        int saved = ::dup(2);
        ::dup2(w.get(), 2);
        mp::Process p({.name = "failing"}, throw_invalid_argument);
        p.start();
        ::dup2(saved, 2);
        ::close(saved);
        w.reset();
        std::string err = drain(r.get());
        p.join();
        CHECK(p.exitcode() == 1);
        CHECK(err == "Process failing:\nstd::invalid_argument: bad thing\n");
    }
}

TEST_CASE("terminate and kill send SIGTERM and SIGKILL") {
    auto s = shared_ints::create();
    mp::Process p(wait_for_release, s);
    p.start();
    CHECK_FALSE(p.join(50ms));
    CHECK(p.is_alive());
    p.terminate();
    CHECK(p.join(10s));
    CHECK(p.exitcode() == -SIGTERM);
    CHECK(fmt::format("{}", p).ends_with("stopped exitcode=-SIGTERM>"));

    mp::Process q(wait_for_release, s);
    q.start();
    q.kill();
    q.join();
    CHECK(q.exitcode() == -SIGKILL);
    // Signalling an ended process is harmless, as in Python.
    q.terminate();
    q.kill();
    CHECK(q.exitcode() == -SIGKILL);
}

TEST_CASE("join with a timeout, in seconds or as a duration") {
    auto s = shared_ints::create();
    mp::Process p(wait_for_release, s);
    p.start();
    CHECK_FALSE(p.join(0.01));
    CHECK_FALSE(p.join(0ms));
    CHECK_FALSE(p.join(-1.0));
    release(s);
    CHECK(p.join(30.0));
    CHECK(p.join(0ms));
}

TEST_CASE("the sentinel becomes readable when the process ends") {
    auto s = shared_ints::create();
    mp::Process p(wait_for_release, s);
    CHECK_THROWS_AS(p.sentinel(), mp::ValueError);
    p.start();
    pollfd pf{p.sentinel(), POLLIN, 0};
    CHECK(::poll(&pf, 1, 0) == 0);
    release(s);
    CHECK(::poll(&pf, 1, 10000) == 1);
    p.join();
}

TEST_CASE("misuse raises Python's errors") {
    mp::Process p([] {});
    CHECK_THROWS_WITH(p.join(), "can only join a started process");
    CHECK_THROWS_AS(p.terminate(), mp::ValueError);
    p.start();
    CHECK_THROWS_WITH(p.start(), "cannot start a process twice");
    CHECK_THROWS_AS(p.daemon(true), mp::ValueError);
    p.join();

    auto s = shared_ints::create();
    mp::Process running(wait_for_release, s);
    running.start();
    CHECK_THROWS_WITH(running.close(), Catch::Contains("Cannot close a process while it is still running"));
    release(s);
    running.join();
    running.close();
    running.close();  // closing twice is allowed
    // Python: every method of a closed process raises ValueError; its name, daemon flag and
    // authkey (properties that do not check, in Python) still read.
    CHECK_THROWS_WITH(running.exitcode(), "process object is closed");
    CHECK_THROWS_WITH(running.daemon(true), "process object is closed");
    CHECK_FALSE(running.daemon());
    CHECK(running.authkey() == mp::current_process().authkey());
    CHECK_THROWS_WITH(running.start_method(), "process object is closed");
    CHECK_THROWS_WITH(running.start_method("spawn"), "process object is closed");
    CHECK_THROWS_WITH(running.ident(), "process object is closed");
    CHECK_THROWS_WITH(running.join(1s), "process object is closed");
    CHECK(running.name().starts_with("Process-"));
    mp::current_process().close();  // does nothing, as Python's _MainProcess.close()
    CHECK(mp::current_process().is_alive());
    mp::Process after([] {});
    CHECK(after.authkey() == mp::current_process().authkey());
    CHECK_THROWS_WITH(running.is_alive(), "process object is closed");
    CHECK_THROWS_WITH(running.join(), "process object is closed");
    CHECK_THROWS_WITH(running.start(), "process object is closed");
    CHECK_THROWS_WITH(running.pid(), "process object is closed");
    CHECK_THROWS_WITH(running.sentinel(), "process object is closed");
    CHECK_THROWS_WITH(running.terminate(), "process object is closed");
    CHECK_THROWS_WITH(running.kill(), "process object is closed");
    CHECK(fmt::format("{}", running).ends_with("closed>"));

    // Errors are std::logic_error, as API.md promises.
    CHECK_THROWS_AS(p.start(), std::logic_error);
}

TEST_CASE("a daemonic process may not start children") {
    auto s = shared_ints::create();
    mp::Process p({.daemon = true}, try_to_start_a_child, s);
    p.start();
    p.join();
    CHECK(s->value == 1);
}

TEST_CASE("names, daemon flag, pid and the Python repr") {
    mp::Process a([] {});
    mp::Process b([] {});
    int na = std::stoi(a.name().substr(8)), nb = std::stoi(b.name().substr(8));
    CHECK(a.name().starts_with("Process-"));
    CHECK(nb == na + 1);
    a.name("renamed");
    CHECK(a.name() == "renamed");
    CHECK_FALSE(a.daemon());
    a.daemon(true);
    CHECK(a.daemon());
    CHECK_FALSE(a.pid());
    CHECK(fmt::format("{}", a) ==
          fmt::format("<Process name='renamed' parent={} initial daemon>", ::getpid()));
    a.start();
    CHECK(a.pid() > 0);
    CHECK(a.ident() == a.pid());
    a.join();
    CHECK(fmt::format("{}", a) == fmt::format("<Process name='renamed' pid={} parent={} stopped "
                                              "exitcode=0 daemon>",
                                              *a.pid(), ::getpid()));
    mp::Process named({.name = "sleeper", .daemon = true}, [] {});
    CHECK(named.name() == "sleeper");
    CHECK(named.daemon());
}

TEST_CASE("current_process and parent_process") {
    CHECK(mp::current_process().name() == "MainProcess");
    CHECK(mp::current_process().pid() == ::getpid());
    CHECK(mp::current_process().is_alive());
    CHECK(mp::parent_process() == nullptr);
    CHECK(fmt::format("{}", mp::current_process()) == "<_MainProcess name='MainProcess' parent=None started>");
    CHECK_THROWS_AS(mp::current_process().start(), mp::ValueError);

    auto s = shared_ints::create();
    mp::Process p({.name = "kid"}, check_identity, s, int(::getpid()));
    p.start();
    p.join();
    CHECK(s->value == 1);
}

TEST_CASE("current_process().authkey() is inherited by every child; Process::authkey sets one") {
    const std::string key = mp::current_process().authkey();
    CHECK(key.size() == 32);
    CHECK(key != std::string(32, '\0'));
    auto [r, w] = mp::Pipe(false);
    auto keys_of = [&](mp::Process& p) {
        p.start();
        std::vector<std::string> got;
        for (int i = 0; i < 2; ++i) {
            REQUIRE(r.poll(20s));
            got.push_back(r.recv<std::string>());
        }
        CHECK(test::finish(p) == 0);
        return got;
    };
    mp::Process inherits(report_authkey, w);
    CHECK(inherits.authkey() == key);
    CHECK(keys_of(inherits) == std::vector<std::string>{key, key});

    mp::Process given(report_authkey, w);
    given.authkey("another key");
    CHECK(keys_of(given) == std::vector<std::string>{"another key", "another key"});
    CHECK(mp::current_process().authkey() == key);  // the parent's own is unchanged
}

TEST_CASE("active_children lists live children and reaps finished ones") {
    auto s = shared_ints::create();
    mp::Process a(wait_for_release, s);
    mp::Process b([] {});
    a.start();
    b.start();
    b.join();
    auto live = mp::active_children();
    CHECK(std::find(live.begin(), live.end(), &a) != live.end());
    CHECK(std::find(live.begin(), live.end(), &b) == live.end());
    release(s);
    a.join();
    CHECK(mp::active_children().empty());
}

TEST_CASE("Process objects can be moved, for example into a vector") {
    auto s = shared_ints::create();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 3; ++i) ps.emplace_back(add_bit, s, i);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    CHECK(s->value == 7);
    auto live = mp::active_children();
    CHECK(live.empty());
}

TEST_CASE("cpu_count and process_cpu_count") {
    CHECK(mp::cpu_count() > 0);
    CHECK(mp::process_cpu_count() > 0);
    CHECK(mp::process_cpu_count() <= mp::cpu_count());
    auto s = shared_ints::create();
    mp::Process p(count_cpus_on_one, s);
    p.start();
    p.join();
    CHECK(s->value == 1);
}

TEST_CASE("at exit, daemonic children are terminated and the others joined") {
    auto s = shared_ints::create();
    // The middle process plays the parent: it starts both kinds, then leaves through exit().
    mp::Process middle(start_both_then_exit, s);
    middle.start();
    middle.join();
    CHECK(middle.exitcode() == 0);
    CHECK(s->value == 1);
    CHECK(gone_within(s->other, 5000));
}

TEST_CASE("a Process object destroyed while its child runs does not orphan the child") {
    auto s = shared_ints::create();
    mp::Process middle(start_and_forget, s);
    middle.start();
    middle.join();
    CHECK(s->value == 5);
}

TEST_CASE("daemonic children die with a parent killed by SIGKILL") {
    auto s = shared_ints::create();
    mp::Process middle(start_daemon_then_wait, s);
    middle.start();
    int grandchild = test::wait_published(s->other, 20s);
    REQUIRE(grandchild != 0);
    middle.kill();
    middle.join();
    CHECK(middle.exitcode() == -SIGKILL);
    CHECK(gone_within(grandchild, 5000));
}
