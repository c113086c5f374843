// Seed 03: Pool.map over a range, a custom pool size, and apply_async with get().
#include <multiprocessing.hpp>

#include <ranges>
#include <vector>

#include <fmt/ranges.h>

namespace mp = multiprocessing;

int job(int x) { return x * x; }

void multicore() {
    mp::Pool pool;
    auto res = pool.map(job, std::views::iota(0, 10));
    fmt::print("{}\n", res);
    mp::Pool pool3({.processes = 3});
    res = pool3.map(job, std::views::iota(0, 10));
    fmt::print("{}\n", res);
    auto r = pool3.apply_async(job, std::tuple{2});
    fmt::print("{}\n", r.get());
    std::vector<mp::AsyncResult<int>> multi_res;
    for (int i = 0; i < 10; ++i) multi_res.push_back(pool3.apply_async(job, std::tuple{i}));
    std::vector<int> values;
    for (auto& m : multi_res) values.push_back(m.get());
    fmt::print("{}\n", values);
}

int main() { multicore(); }
