// Two processes add to a shared Value; the Lock makes each one's five additions contiguous.
// Which process takes the lock first depends on scheduling, so either order is correct.
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include <multiprocessing.hpp>
#include <multiprocessing/sharedctypes.hpp>
#include <multiprocessing/synchronize.hpp>

namespace mp = multiprocessing;
using namespace std::chrono_literals;

void job(mp::Value<mp::typecode_t<'i'>> v, int num, mp::Lock l) {
    l.acquire();
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(10ms);
        v.value() += num;
        fmt::print("{}\n", v.value());
        std::fflush(stdout);
    }
    l.release();
}

int main() {
    mp::Lock l;
    mp::Value<mp::typecode_t<'i'>> v(0);
    mp::Process p1(job, v, 1, l);
    mp::Process p2(job, v, 4, l);
    p1.start();
    p2.start();
    p1.join();
    p2.join();
}
