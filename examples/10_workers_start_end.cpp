// Seed 10: three processes run side by side; the parent waits for all of them.
#include <multiprocessing.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include <fmt/core.h>

namespace mp = multiprocessing;
using namespace std::chrono_literals;

void worker(int num) {
    fmt::print("process {} started\n", num);
    std::fflush(stdout);
    std::this_thread::sleep_for(200ms);
    fmt::print("process {} finished\n", num);
    std::fflush(stdout);
}

int main() {
    std::vector<mp::Process> processes;
    for (int i = 0; i < 3; ++i) {
        auto& p = processes.emplace_back(worker, i);
        p.start();
    }
    for (auto& p : processes) p.join();
    fmt::print("all processes finished\n");
}
