// The README's demo: a CPU-bound job split across one process per CPU, timed against the
// same work done serially in one process.
#include <multiprocessing.hpp>

#include <chrono>
#include <cstdint>
#include <vector>

#include <fmt/core.h>

namespace mp = multiprocessing;

// Counts the primes in [lo, hi) by trial division: deliberately CPU-bound.
std::int64_t count_primes(std::int64_t lo, std::int64_t hi) {
    std::int64_t n = 0;
    for (std::int64_t x = std::max<std::int64_t>(lo, 2); x < hi; ++x) {
        bool prime = true;
        for (std::int64_t d = 2; d * d <= x; ++d)
            if (x % d == 0) {
                prime = false;
                break;
            }
        n += prime;
    }
    return n;
}

int main() {
    const std::int64_t limit = 3'000'000;
    const int workers = mp::process_cpu_count();
    using clock = std::chrono::steady_clock;

    auto t0 = clock::now();
    std::int64_t serial = count_primes(0, limit);
    double serial_s = std::chrono::duration<double>(clock::now() - t0).count();

    // Each child reports its share through its exit code's channel of choice: here, stdout.
    auto t1 = clock::now();
    std::vector<mp::Process> ps;
    for (int w = 0; w < workers; ++w)
        ps.emplace_back(
            [=](int w) {
                auto lo = limit * w / workers, hi = limit * (w + 1) / workers;
                fmt::print("  {} counted {} primes in [{}, {})\n", mp::current_process().name(),
                           count_primes(lo, hi), lo, hi);
            },
            w);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    double parallel_s = std::chrono::duration<double>(clock::now() - t1).count();

    fmt::print("{} primes below {}\n", serial, limit);
    fmt::print("serial:   {:.3f} s\n", serial_s);
    fmt::print("{} processes: {:.3f} s\n", workers, parallel_s);
    fmt::print("speed-up: {:.2f}x on {} CPUs\n", serial_s / parallel_s, workers);
}
