// synchronize and sharedctypes: an uncontended Lock, two processes adding to a Value under its
// lock, Event set-to-wake across processes, and one Barrier round of two processes, each
// against its OS floor (a process-shared pthread mutex or barrier, a futex word); creating
// Locks and Values, against a pthread mutex made in shared memory and against one memfd per
// object (how the library made them before its arenas).
#include <multiprocessing.hpp>
#include <multiprocessing/detail/posix/futex.hpp>
#include <multiprocessing/detail/posix/shm.hpp>
#include <multiprocessing/sharedctypes.hpp>
#include <multiprocessing/synchronize.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;
namespace posix = mp::detail::posix;

namespace {

constexpr int adds_per_process = 1'000'000;

// A process-shared pthread mutex (and a counter it guards) in shared memory: the floor.
struct raw_counter {
    pthread_mutex_t mutex;
    long value = 0;
    raw_counter() {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutex_init(&mutex, &a);
        pthread_mutexattr_destroy(&a);
    }
};

template <class F>
void in_two_processes(F f) {
    pid_t pid = ::fork();
    if (pid == 0) {
        f();
        ::_exit(0);
    }
    f();
    ::waitpid(pid, nullptr, 0);
}

void lock_mp(benchmark::State& state) {
    mp::Lock lock;
    for (auto _ : state) {
        lock.acquire();
        lock.release();
    }
}

void lock_pthread(benchmark::State& state) {
    posix::region shm(sizeof(raw_counter));
    auto* c = ::new (shm.data()) raw_counter;
    for (auto _ : state) {
        pthread_mutex_lock(&c->mutex);
        pthread_mutex_unlock(&c->mutex);
    }
}

void value_add_mp(benchmark::State& state, bool plain_lock) {
    for (auto _ : state) {
        mp::Value<long> v = plain_lock ? mp::Value<long>(0, mp::Lock()) : mp::Value<long>(0);
        mp::Process p([v] {
            for (int i = 0; i < adds_per_process; ++i) {
                std::scoped_lock g(v.get_lock());
                v.value() += 1;
            }
        });
        p.start();
        for (int i = 0; i < adds_per_process; ++i) {
            std::scoped_lock g(v.get_lock());
            v.value() += 1;
        }
        p.join();
        if (v.value() != 2L * adds_per_process) state.SkipWithError("lost an addition");
    }
    state.counters["items"] = 2.0 * adds_per_process;
}

void value_add_pthread(benchmark::State& state) {
    posix::region shm(sizeof(raw_counter));
    for (auto _ : state) {
        auto* c = ::new (shm.data()) raw_counter;
        in_two_processes([c] {
            for (int i = 0; i < adds_per_process; ++i) {
                pthread_mutex_lock(&c->mutex);
                c->value += 1;
                pthread_mutex_unlock(&c->mutex);
            }
        });
        if (c->value != 2L * adds_per_process) state.SkipWithError("lost an addition");
    }
    state.counters["items"] = 2.0 * adds_per_process;
}

// Ping-pong through two Events: each iteration is two set-to-wake hops.
void event_mp(benchmark::State& state) {
    mp::Event ping, pong;
    mp::Value<int> stop(0, false);
    mp::Process p([=] {
        for (;;) {
            ping.wait();
            ping.clear();
            if (stop.value()) return;
            pong.set();
        }
    });
    p.start();
    for (auto _ : state) {
        ping.set();
        pong.wait();
        pong.clear();
    }
    stop.value() = 1;
    ping.set();
    p.join();
    state.counters["items"] = 2;
}

// The floor: the same two hops on one futex word, sleeping at once.
void event_futex(benchmark::State& state) {
    struct words {
        std::atomic<std::uint32_t> turn{0};
        std::atomic<std::uint32_t> stop{0};
    };
    posix::region shm(sizeof(words));
    auto* w = ::new (shm.data()) words;
    auto await = [w](std::uint32_t want) {
        std::uint32_t v;
        while ((v = w->turn.load(std::memory_order_acquire)) != want) posix::futex_wait(&w->turn, v, mp::detail::forever);
    };
    auto post = [w](std::uint32_t v) {
        w->turn.store(v, std::memory_order_release);
        posix::futex_wake(&w->turn, 1);
    };
    pid_t pid = ::fork();
    if (pid == 0) {
        for (std::uint32_t t = 1;; t += 2) {
            await(t);
            if (w->stop.load()) ::_exit(0);
            post(t + 1);
        }
    }
    std::uint32_t t = 0;
    for (auto _ : state) {
        post(t + 1);
        t += 2;
        await(t);
    }
    w->stop.store(1);
    post(t + 1);
    ::waitpid(pid, nullptr, 0);
    state.counters["items"] = 2;
}

void barrier_mp(benchmark::State& state) {
    mp::Barrier b(2);
    const auto rounds = state.max_iterations;
    mp::Process p([=] {
        for (benchmark::IterationCount i = 0; i < rounds; ++i) b.wait();
    });
    p.start();
    for (auto _ : state) b.wait();
    p.join();
}

void barrier_pthread(benchmark::State& state) {
    posix::region shm(sizeof(pthread_barrier_t));
    auto* b = static_cast<pthread_barrier_t*>(shm.data());
    pthread_barrierattr_t a;
    pthread_barrierattr_init(&a);
    pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(b, &a, 2);
    const auto rounds = state.max_iterations;
    pid_t pid = ::fork();
    if (pid == 0) {
        for (benchmark::IterationCount i = 0; i < rounds; ++i) pthread_barrier_wait(b);
        ::_exit(0);
    }
    for (auto _ : state) pthread_barrier_wait(b);
    ::waitpid(pid, nullptr, 0);
    pthread_barrier_destroy(b);
}

// Creating objects and dropping them, `per_batch` at a time (a program's thousands of locks).
constexpr int per_batch = 1'000;

template <class Make>
void create_batch(benchmark::State& state, Make make) {
    for (auto _ : state) {
        std::vector<decltype(make())> objects;
        objects.reserve(per_batch);
        for (int i = 0; i < per_batch; ++i) objects.push_back(make());
        benchmark::DoNotOptimize(objects.data());
    }
    state.counters["items"] = per_batch;
}

void lock_create_mp(benchmark::State& state) {
    create_batch(state, [] { return mp::Lock(); });
}
void value_create_mp(benchmark::State& state) {
    create_batch(state, [] { return mp::Value<int>(0); });
}

// The floor: initialising a process-shared pthread mutex in shared memory mapped beforehand.
void create_pthread(benchmark::State& state) {
    posix::region shm(per_batch * sizeof(raw_counter));
    auto* c = static_cast<raw_counter*>(shm.data());
    for (auto _ : state) {
        for (int i = 0; i < per_batch; ++i) {
            ::new (c + i) raw_counter;
            benchmark::DoNotOptimize(c + i);
        }
        for (int i = 0; i < per_batch; ++i) pthread_mutex_destroy(&c[i].mutex);
    }
    state.counters["items"] = per_batch;
}

// One anonymous memfd and mapping per object.
void create_memfd(benchmark::State& state) {
    create_batch(state, [] { return std::make_unique<posix::region>(sizeof(raw_counter)); });
}

}  // namespace

BENCHMARK(lock_create_mp)->Name("lock_create/mp");
BENCHMARK(create_pthread)->Name("lock_create/floor:pthread_mutex_init(pshared)");
BENCHMARK(create_memfd)->Name("lock_create/other:memfd+mmap per object");
BENCHMARK(value_create_mp)->Name("value_create/mp");
BENCHMARK(create_pthread)->Name("value_create/floor:pthread_mutex_init(pshared)");

BENCHMARK(lock_mp)->Name("lock_uncontended/mp");
BENCHMARK(lock_pthread)->Name("lock_uncontended/floor:pthread_mutex(pshared)");

BENCHMARK_CAPTURE(value_add_mp, rlock, false)->Name("value_add_2proc/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(value_add_mp, lock, true)
    ->Name("value_add_2proc/other:Value(lock=Lock)")->UseRealTime()->MinTime(0.5);
BENCHMARK(value_add_pthread)
    ->Name("value_add_2proc/floor:pthread_mutex(pshared)")->UseRealTime()->MinTime(0.5);

BENCHMARK(event_mp)->Name("event_wake/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK(event_futex)->Name("event_wake/floor:futex")->UseRealTime()->MinTime(0.3);

BENCHMARK(barrier_mp)->Name("barrier_round_2proc/mp")->UseRealTime()->MinTime(0.3);
BENCHMARK(barrier_pthread)
    ->Name("barrier_round_2proc/floor:pthread_barrier(pshared)")->UseRealTime()->MinTime(0.3);
