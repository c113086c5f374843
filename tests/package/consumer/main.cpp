#include <multiprocessing.hpp>

#include <fmt/core.h>

namespace mp = multiprocessing;

int main() {
    mp::Process p([](int x) { fmt::print("child says {}\n", x); }, 42);
    p.start();
    p.join();
    fmt::print("parent saw exitcode {}\n", *p.exitcode());
}
