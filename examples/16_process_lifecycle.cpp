// Seed 16: process lifecycle: is_alive, join with a timeout, terminate, exitcode, daemon.
#include <multiprocessing.hpp>

#include <chrono>
#include <csignal>
#include <stdexcept>
#include <thread>

#include <fmt/core.h>

#include "py.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

void sleeper() { std::this_thread::sleep_for(30s); }

void fails() { throw std::runtime_error("boom"); }

int main() {
    mp::Process p({.name = "sleeper", .daemon = true}, sleeper);
    fmt::print("{} {} {} {}\n", p.name(), py(p.daemon()), py(p.is_alive()), py(p.exitcode()));
    p.start();
    p.join(0.1);
    fmt::print("{} {}\n", py(p.is_alive()), py(p.exitcode()));
    p.terminate();
    p.join();
    fmt::print("{} {}\n", py(p.is_alive()), py(p.exitcode() == -SIGTERM));
    mp::Process q(fails);
    q.start();
    q.join();
    fmt::print("exitcode after an exception: {}\n", py(q.exitcode()));
    fmt::print("cpu_count is positive: {}\n", py(mp::cpu_count() > 0));
}
