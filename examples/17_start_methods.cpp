// Seed 17: choosing a start method through a context.
#include <multiprocessing.hpp>

#include <ranges>

#include <fmt/ranges.h>

namespace mp = multiprocessing;

int square(int x) { return x * x; }

int main() {
    for (const char* method : {"fork", "spawn", "forkserver"}) {
        auto ctx = mp::get_context(method);
        auto pool = ctx.Pool(2);
        fmt::print("{} {}\n", method, pool.map(square, std::views::iota(0, 5)));
    }
}
