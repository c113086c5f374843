// Seed 01: a child process runs a function with arguments.
#include <multiprocessing.hpp>

#include <fmt/core.h>

namespace mp = multiprocessing;

void job(int a, int d) { fmt::print("{} {}\n", a, d); }

int main() {
    mp::Process p1(job, 1, 2);
    p1.start();
    p1.join();
}
