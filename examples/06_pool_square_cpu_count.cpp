// Seed 06: a Pool sized to the machine, used as a context manager (a scope).
#include <multiprocessing.hpp>

#include <ranges>
#include <vector>

#include <fmt/ranges.h>

namespace mp = multiprocessing;

int square(int x) { return x * x; }

int main() {
    {
        mp::Pool pool(mp::cpu_count());
        fmt::print("{}\n", pool.map(square, std::vector{1, 2, 3, 4}));
    }
    {
        mp::Pool pool({.processes = 4});
        fmt::print("{}\n", pool.map(square, std::views::iota(0, 10)));
    }
}
