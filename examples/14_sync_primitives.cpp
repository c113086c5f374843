// Seed 14: RLock, Semaphore, Event and Condition across processes.
#include <multiprocessing.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "py.hpp"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

void reenter(mp::RLock rlock, mp::Queue<std::string> out) {
    std::scoped_lock outer(rlock);
    std::scoped_lock inner(rlock);
    out.put("re-entered");
}

void limited(mp::Semaphore sem, mp::Value<int> active, mp::Value<int> peak, mp::Lock lock) {
    std::scoped_lock s(sem);
    {
        std::scoped_lock g(lock);
        active.value() += 1;
        peak.value() = std::max(peak.value(), active.value());
    }
    std::this_thread::sleep_for(50ms);
    std::scoped_lock g(lock);
    active.value() -= 1;
}

void waiter(mp::Event event, mp::Queue<bool> out) { out.put(event.wait(5.0)); }

void consumer(mp::Condition cond, mp::Value<int> ready, mp::Queue<int> out) {
    std::scoped_lock g(cond);
    cond.wait_for([&] { return ready.value() == 1; }, 5.0);
    out.put(ready.value());
}

int main() {
    mp::Queue<std::string> out;
    mp::RLock rl;
    mp::Process p(reenter, rl, out);
    p.start();
    p.join();
    fmt::print("{}\n", out.get());

    mp::Semaphore sem(2);
    mp::Value<int> active(0), peak(0);
    mp::Lock lock;
    std::vector<mp::Process> ps;
    for (int i = 0; i < 5; ++i) ps.emplace_back(limited, sem, active, peak, lock);
    for (auto& q : ps) q.start();
    for (auto& q : ps) q.join();
    fmt::print("peak concurrency: {}\n", peak.value());

    mp::Event ev;
    mp::Queue<bool> seen;
    mp::Process w(waiter, ev, seen);
    w.start();
    ev.set();
    w.join();
    fmt::print("event seen: {}\n", py(seen.get()));
    fmt::print("wait on a clear event: {}\n", py(mp::Event().wait(0.05)));

    mp::Condition cond;
    mp::Value<int> ready(0);
    mp::Queue<int> values;
    mp::Process c(consumer, cond, ready, values);
    c.start();
    {
        std::scoped_lock g(cond);
        ready.value() = 1;
        cond.notify_all();
    }
    c.join();
    fmt::print("condition value: {}\n", values.get());
}
