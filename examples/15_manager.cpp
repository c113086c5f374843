// Seed example 15: a Manager shares a dict and a list between processes.
#include <multiprocessing.hpp>
#include <multiprocessing/managers.hpp>

#include <fmt/ranges.h>

#include <algorithm>
#include <vector>

namespace mp = multiprocessing;

void fill(mp::DictProxy<int, int> d, mp::ListProxy<int> l, int i) {
    d[i] = i * i;
    l.append(i);
}

int main() {
    auto manager = mp::Manager();  // with mp.Manager() as manager:
    auto d = manager.dict<int, int>();
    auto l = manager.list<int>();
    std::vector<mp::Process> ps;
    for (int i = 0; i < 4; ++i) ps.emplace_back(fill, d, l, i);
    for (auto& p : ps) p.start();
    for (auto& p : ps) p.join();
    // Python: print(sorted(d.items()), sorted(l))
    auto items = d.items();
    std::ranges::sort(items);
    auto values = l.to_vector();
    std::ranges::sort(values);
    fmt::print("{} {}\n", items, values);
}
