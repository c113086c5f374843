// Seed example 02: two children each compute a sum and hand it back through a Queue.
#include <multiprocessing.hpp>

#include <fmt/core.h>

namespace mp = multiprocessing;

void job(mp::Queue<long long> q) {
    long long res = 0;
    for (long long i = 0; i < 1000; ++i) res += i + i * i + i * i * i;
    q.put(res);
}

int main() {
    mp::Queue<long long> q;
    mp::Process p1(job, q);
    mp::Process p2(job, q);
    p1.start();
    p2.start();
    p1.join();  // safe before the get(): put() has already stored the item in shared memory
    p2.join();
    auto res1 = q.get();
    auto res2 = q.get();
    fmt::print("{} {}\n", res1, res2);
}
