// Seed 08: handling an exception inside a pool worker, and letting one reach the parent.
#include <multiprocessing.hpp>

#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "py.hpp"

namespace mp = multiprocessing;

// Python raises ZeroDivisionError; C++ integer division by zero is undefined, so the
// translation checks first and throws, as Python's interpreter does.
double divide(double a, double b) {
    if (b == 0) throw std::domain_error("division by zero");
    return a / b;
}

std::string safe_worker(int x) {
    try {
        return fmt::format("{}", divide(x, 0));
    } catch (const std::exception& e) {
        return fmt::format("error: {}", e.what());
    }
}

int unsafe_worker(int x) {
    if (x == 3) throw std::invalid_argument(fmt::format("bad input {}", x));
    return x;
}

int main() {
    mp::Pool pool(2);
    fmt::print("{}\n", py(pool.map(safe_worker, std::vector{1, 2})));
    try {
        pool.map(unsafe_worker, std::views::iota(0, 5));
    } catch (const std::invalid_argument& e) {
        fmt::print("caught in parent: {}\n", e.what());
    }
}
