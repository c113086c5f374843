// A lock released in a finally block, so it is released even if the work throws.
// C++ has no finally: a guard adopting the acquired lock releases it on every way out.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <multiprocessing.hpp>
#include <multiprocessing/synchronize.hpp>

namespace mp = multiprocessing;
using namespace std::chrono_literals;

void worker(mp::Lock lock, int num) {
    lock.acquire();
    std::scoped_lock finally(std::adopt_lock, lock);
    fmt::print("process {} holds the lock\n", num);
    std::fflush(stdout);
    std::this_thread::sleep_for(100ms);
    fmt::print("process {} releases the lock\n", num);
    std::fflush(stdout);
}

int main() {
    mp::Lock lock;
    std::vector<mp::Process> processes;
    for (int i = 0; i < 2; ++i) {
        processes.emplace_back(worker, lock, i);
        processes.back().start();
    }
    for (auto& p : processes) p.join();
    fmt::print("all processes finished\n");
}
