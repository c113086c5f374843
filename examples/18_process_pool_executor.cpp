// Seed 18: concurrent.futures.ProcessPoolExecutor: submit, map, as_completed.
#include <multiprocessing.hpp>

#include <algorithm>
#include <ranges>
#include <vector>

#include <fmt/ranges.h>

namespace mp = multiprocessing;
using mp::futures::as_completed;

int square(int x) { return x * x; }

int main() {
    mp::futures::ProcessPoolExecutor ex({.max_workers = 2});
    std::vector<mp::futures::Future<int>> futures;
    for (int i = 0; i < 5; ++i) futures.push_back(ex.submit(square, i));
    std::vector<int> results;
    for (auto& f : as_completed(futures)) results.push_back(f.result());
    std::ranges::sort(results);
    fmt::print("{}\n", results);
    std::vector<int> mapped;
    for (int v : ex.map(square, std::views::iota(0, 5))) mapped.push_back(v);
    fmt::print("{}\n", mapped);
}
