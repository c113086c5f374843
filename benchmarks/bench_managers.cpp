// Manager round trips: a proxied dict set + get (two requests, each answered by the server process)
// and a manager Lock acquire + release, against the floor of two request-reply round trips over
// raw pipe(2) pairs between two processes (what a proxy call is made of, minus the protocol); and
// making and dropping a dict (one request, then the one-way decref of the last proxy) against one
// round trip.
#include <multiprocessing.hpp>
#include <multiprocessing/managers.hpp>

#include <cstdint>

#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;

namespace {

void dict_set_get_mp(benchmark::State& state) {
    auto manager = mp::Manager();
    auto d = manager.dict<int, int>();
    int i = 0;
    for (auto _ : state) {
        d.set(i & 63, i);
        benchmark::DoNotOptimize(d.get(i & 63));
        ++i;
    }
}

void dict_create_drop_mp(benchmark::State& state) {
    auto manager = mp::Manager();
    for (auto _ : state) {
        auto d = manager.dict<int, int>();
        benchmark::DoNotOptimize(d.id());
    }
}

void lock_acquire_release_mp(benchmark::State& state) {
    auto manager = mp::Manager();
    auto lock = manager.Lock();
    for (auto _ : state) {
        lock.acquire();
        lock.release();
    }
}

// Round trips per iteration through a raw pipe pair to a forked echo process.
template <int Trips>
void round_trips_pipe(benchmark::State& state) {
    int there[2], back[2];
    if (::pipe(there) != 0 || ::pipe(back) != 0) return state.SkipWithError("pipe");
    pid_t pid = ::fork();
    if (pid == 0) {
        std::int64_t x = 0;
        while (::read(there[0], &x, sizeof x) == sizeof x && x >= 0)
            if (::write(back[1], &x, sizeof x) != sizeof x) break;
        ::_exit(0);
    }
    std::int64_t x = 0;
    for (auto _ : state) {
        for (int k = 0; k < Trips; ++k) {
            if (::write(there[1], &x, sizeof x) != sizeof x ||
                ::read(back[0], &x, sizeof x) != sizeof x)
                return state.SkipWithError("pipe i/o");
        }
    }
    x = -1;
    (void)!::write(there[1], &x, sizeof x);
    ::waitpid(pid, nullptr, 0);
    for (int fd : {there[0], there[1], back[0], back[1]}) ::close(fd);
}

}  // namespace

BENCHMARK(dict_set_get_mp)->Name("manager_dict_set_get/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK(round_trips_pipe<2>)
    ->Name("manager_dict_set_get/floor:2x pipe(2) round trip")
    ->UseRealTime()
    ->MinTime(0.3);
BENCHMARK(lock_acquire_release_mp)
    ->Name("manager_lock_acquire_release/mp")
    ->UseRealTime()
    ->MinTime(0.3);
BENCHMARK(round_trips_pipe<2>)
    ->Name("manager_lock_acquire_release/floor:2x pipe(2) round trip")
    ->UseRealTime()
    ->MinTime(0.3);
BENCHMARK(dict_create_drop_mp)->Name("manager_dict_create_drop/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK(round_trips_pipe<1>)
    ->Name("manager_dict_create_drop/floor:pipe(2) round trip")
    ->UseRealTime()
    ->MinTime(0.3);
