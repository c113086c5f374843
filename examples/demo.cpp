// The README's demo: a CPU-bound function mapped over a container, once serially and once with a
// Pool of one process per CPU behind a progress bar; prints both times and the speed-up.
#include <multiprocessing.hpp>

#include <chrono>
#include <cstdint>
#include <numeric>
#include <vector>

#include <fmt/core.h>

namespace mp = multiprocessing;

// The number of primes in [n * 10000, (n + 1) * 10000), by trial division: deliberately CPU-bound.
std::int64_t primes_in_block(std::int64_t n) {
    std::int64_t count = 0;
    for (std::int64_t x = std::max<std::int64_t>(n * 10000, 2); x < (n + 1) * 10000; ++x) {
        bool prime = true;
        for (std::int64_t d = 2; d * d <= x; ++d)
            if (x % d == 0) {
                prime = false;
                break;
            }
        count += prime;
    }
    return count;
}

int main() {
    std::vector<std::int64_t> blocks(400);
    std::iota(blocks.begin(), blocks.end(), 0);
    using clock = std::chrono::steady_clock;

    auto t0 = clock::now();
    std::int64_t serial = 0;
    for (auto b : blocks) serial += primes_in_block(b);
    double serial_s = std::chrono::duration<double>(clock::now() - t0).count();

    mp::Pool pool;  // process_cpu_count() workers
    auto t1 = clock::now();
    std::int64_t parallel = 0;
    for (auto n : mp::progress(pool.imap(primes_in_block, blocks, 4), {.desc = "primes"}))
        parallel += n;
    double pool_s = std::chrono::duration<double>(clock::now() - t1).count();

    fmt::print("{} primes below {} (serial {}, pool {})\n", parallel, blocks.size() * 10000,
               serial, parallel == serial ? "agrees" : "DISAGREES");
    fmt::print("serial:           {:.3f} s\n", serial_s);
    fmt::print("Pool({} workers): {:.3f} s\n", pool.processes(), pool_s);
    fmt::print("speed-up:         {:.2f}x on {} CPUs\n", serial_s / pool_s, mp::process_cpu_count());
    return parallel == serial ? 0 : 1;
}
