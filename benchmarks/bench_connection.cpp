// Pipe ping-pong: the round trip of a small int between two processes, through mp::Pipe, against
// the floors: a raw pipe(2) pair and a futex in shared memory (both sleeping at once, as mp does
// on one CPU), and a futex that spins before sleeping (as mp does on several CPUs). Each row twice:
// unpinned, and with both processes pinned to CPU 0 (`_cpu0`).
#include <multiprocessing.hpp>
#include <multiprocessing/connection.hpp>
#include <multiprocessing/detail/posix/futex.hpp>
#include <multiprocessing/detail/posix/shm.hpp>

#include <atomic>
#include <cstdint>
#include <new>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;
namespace posix = mp::detail::posix;

namespace {

// Pins this process (and so the children it forks meanwhile) to CPU 0.
class pin_to_cpu0 {
public:
    explicit pin_to_cpu0(bool on) : on_(on) {
        if (!on_) return;
        ::sched_getaffinity(0, sizeof old_, &old_);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        ::sched_setaffinity(0, sizeof one, &one);
    }
    ~pin_to_cpu0() {
        if (on_) ::sched_setaffinity(0, sizeof old_, &old_);
    }
    pin_to_cpu0(const pin_to_cpu0&) = delete;
    pin_to_cpu0& operator=(const pin_to_cpu0&) = delete;

private:
    bool on_;
    cpu_set_t old_{};
};

void pingpong_mp(benchmark::State& state, bool pinned) {
    pin_to_cpu0 pin(pinned);
    auto [a, b] = mp::Pipe();
    mp::Process echo(
        [](mp::Connection c) {
            for (;;) {
                int x = c.recv<int>();
                if (x < 0) return;
                c.send(x + 1);
            }
        },
        b);
    echo.start();
    b.close();
    int x = 0;
    for (auto _ : state) {
        a.send(x);
        x = a.recv<int>();
    }
    a.send(-1);
    echo.join();
    if (x != int(state.iterations())) state.SkipWithError("lost a message");
}

void pingpong_pipe(benchmark::State& state, bool pinned) {
    pin_to_cpu0 pin(pinned);
    int there[2], back[2];
    if (::pipe(there) != 0 || ::pipe(back) != 0) return state.SkipWithError("pipe");
    pid_t pid = ::fork();
    if (pid == 0) {
        int x = 0;
        while (::read(there[0], &x, sizeof x) == sizeof x && x >= 0) {
            ++x;
            if (::write(back[1], &x, sizeof x) != sizeof x) break;
        }
        ::_exit(0);
    }
    int x = 0;
    for (auto _ : state) {
        if (::write(there[1], &x, sizeof x) != sizeof x || ::read(back[0], &x, sizeof x) != sizeof x)
            state.SkipWithError("pipe I/O");
    }
    int stop = -1;
    if (::write(there[1], &stop, sizeof stop) != sizeof stop) state.SkipWithError("pipe I/O");
    ::waitpid(pid, nullptr, 0);
    for (int fd : {there[0], there[1], back[0], back[1]}) ::close(fd);
}

struct futex_pair {
    std::atomic<std::uint32_t> word{0};  // odd: the parent's turn is over; even: the child's
    std::atomic<std::uint32_t> stop{0};
};

// Waits until `w` holds `want`: spins up to spin_ns first (0: sleeps at once).
void futex_await(std::atomic<std::uint32_t>& w, std::uint32_t want, std::int64_t spin_ns) {
    std::uint32_t v = w.load(std::memory_order_acquire);
    if (v == want) return;
    if (spin_ns > 0) {
        std::int64_t end = posix::monotonic_ns() + spin_ns;
        do {
            for (int i = 0; i < 64; ++i) {
                posix::cpu_relax();
                if (w.load(std::memory_order_acquire) == want) return;
            }
        } while (posix::monotonic_ns() < end);
    }
    while ((v = w.load(std::memory_order_acquire)) != want) posix::futex_wait(&w, v, mp::detail::forever);
}

void pingpong_futex(benchmark::State& state, bool pinned, std::int64_t spin_ns) {
    pin_to_cpu0 pin(pinned);
    posix::region shm(sizeof(futex_pair));
    auto* f = ::new (shm.data()) futex_pair;
    pid_t pid = ::fork();
    if (pid == 0) {
        for (std::uint32_t turn = 1;; turn += 2) {
            futex_await(f->word, turn, spin_ns);
            if (f->stop.load()) ::_exit(0);
            f->word.store(turn + 1, std::memory_order_release);
            posix::futex_wake(&f->word, 1);
        }
    }
    std::uint32_t turn = 0;
    for (auto _ : state) {
        f->word.store(turn + 1, std::memory_order_release);
        posix::futex_wake(&f->word, 1);
        turn += 2;
        futex_await(f->word, turn, spin_ns);
    }
    f->stop.store(1);
    f->word.store(turn + 1, std::memory_order_release);
    posix::futex_wake(&f->word, 1);
    ::waitpid(pid, nullptr, 0);
}

constexpr std::int64_t spin = 50'000;  // as mp's receive on several CPUs

}  // namespace

BENCHMARK_CAPTURE(pingpong_mp, u, false)->Name("pipe_pingpong/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK_CAPTURE(pingpong_pipe, u, false)
    ->Name("pipe_pingpong/floor:pipe(2)")->UseRealTime()->MinTime(0.3);
BENCHMARK_CAPTURE(pingpong_futex, u, false, 0)
    ->Name("pipe_pingpong/floor:futex")->UseRealTime()->MinTime(0.3);
BENCHMARK_CAPTURE(pingpong_futex, us, false, spin)
    ->Name("pipe_pingpong/other:futex+spin")->UseRealTime()->MinTime(0.3);

BENCHMARK_CAPTURE(pingpong_mp, p, true)->Name("pipe_pingpong_cpu0/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK_CAPTURE(pingpong_pipe, p, true)
    ->Name("pipe_pingpong_cpu0/floor:pipe(2)")->UseRealTime()->MinTime(0.3);
BENCHMARK_CAPTURE(pingpong_futex, p, true, 0)
    ->Name("pipe_pingpong_cpu0/floor:futex")->UseRealTime()->MinTime(0.3);
