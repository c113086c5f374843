// Seed 13: the rest of Pool: imap, imap_unordered, starmap, map_async, AsyncResult, close/join.
#include <multiprocessing.hpp>

#include <algorithm>
#include <ranges>
#include <tuple>
#include <vector>

#include <fmt/ranges.h>

#include "py.hpp"

namespace mp = multiprocessing;

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }

int main() {
    mp::Pool pool(2);
    std::vector<int> ordered;
    for (int v : pool.imap(square, std::views::iota(0, 6), 2)) ordered.push_back(v);
    fmt::print("{}\n", ordered);
    std::vector<int> unordered;
    for (int v : pool.imap_unordered(square, std::views::iota(0, 6))) unordered.push_back(v);
    std::ranges::sort(unordered);
    fmt::print("{}\n", unordered);
    fmt::print("{}\n", pool.starmap(add, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}}));
    auto r = pool.map_async(square, std::views::iota(0, 4));
    r.wait();
    fmt::print("{} {} {}\n", py(r.ready()), py(r.successful()), r.get(5.0));
    fmt::print("{}\n", pool.apply(add, std::tuple{20, 22}));
    pool.close();
    pool.join();
}
