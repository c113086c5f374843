// Pool: map of a trivial function (bulk path), of a CPU-bound one (parallel efficiency), with
// chunksize 1 (per-task overhead), apply_async round trip, imap_unordered's first result; beside
// the same work on 2 std::threads (the in-process ideal).
#include <multiprocessing.hpp>

#include <cmath>
#include <numeric>
#include <ranges>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;

namespace {

int square(int x) { return x * x; }

// About 10 microseconds of arithmetic.
double cpu_bound(int x) {
    double acc = x;
    for (int i = 0; i < 4000; ++i) acc = std::sqrt(acc * acc + i);
    return acc;
}

template <class F, class T>
auto on_two_threads(F f, const std::vector<T>& in) {
    std::vector<decltype(f(in[0]))> out(in.size());
    auto half = in.size() / 2;
    std::thread t([&] {
        for (std::size_t i = half; i < in.size(); ++i) out[i] = f(in[i]);
    });
    for (std::size_t i = 0; i < half; ++i) out[i] = f(in[i]);
    t.join();
    return out;
}

std::vector<int> iota_vector(int n) {
    std::vector<int> v(std::size_t(n), 0);
    std::iota(v.begin(), v.end(), 0);
    return v;
}

void map_trivial_mp(benchmark::State& state) {
    mp::Pool pool(2);
    auto in = iota_vector(1'000'000);
    for (auto _ : state) benchmark::DoNotOptimize(pool.map(square, in));
    state.counters["items"] = double(in.size());
}
void map_trivial_threads(benchmark::State& state) {
    auto in = iota_vector(1'000'000);
    for (auto _ : state) benchmark::DoNotOptimize(on_two_threads(square, in));
    state.counters["items"] = double(in.size());
}

void map_cpu_mp(benchmark::State& state) {
    mp::Pool pool(2);
    auto in = iota_vector(20'000);
    for (auto _ : state) benchmark::DoNotOptimize(pool.map(cpu_bound, in));
    state.counters["items"] = double(in.size());
}
void map_cpu_threads(benchmark::State& state) {
    auto in = iota_vector(20'000);
    for (auto _ : state) benchmark::DoNotOptimize(on_two_threads(cpu_bound, in));
    state.counters["items"] = double(in.size());
}

void map_chunk1_mp(benchmark::State& state) {
    mp::Pool pool(2);
    auto in = iota_vector(10'000);
    for (auto _ : state) benchmark::DoNotOptimize(pool.map(square, in, 1));
    state.counters["items"] = double(in.size());
}

void apply_async_mp(benchmark::State& state) {
    mp::Pool pool(2);
    for (auto _ : state) benchmark::DoNotOptimize(pool.apply_async(square, std::tuple{3}).get());
}

void imap_first_mp(benchmark::State& state) {
    mp::Pool pool(2);
    auto in = iota_vector(1000);
    for (auto _ : state) {
        auto it = pool.imap_unordered(square, in);
        benchmark::DoNotOptimize(it.next());
    }
}

}  // namespace

BENCHMARK(map_trivial_mp)->Name("pool_map_trivial/mp")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(map_trivial_threads)->Name("pool_map_trivial/other:2 std::threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(map_cpu_mp)->Name("pool_map_cpu/mp")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(map_cpu_threads)->Name("pool_map_cpu/other:2 std::threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(map_chunk1_mp)->Name("pool_map_chunksize1/mp")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(apply_async_mp)->Name("pool_apply_async/mp")->UseRealTime();
BENCHMARK(imap_first_mp)->Name("pool_imap_unordered_first/mp")->UseRealTime();
