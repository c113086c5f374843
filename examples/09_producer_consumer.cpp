// Seed example 09: producer and consumer processes, with None (std::nullopt) as the
// end-of-stream sentinel.
#include <multiprocessing.hpp>

#include <fmt/core.h>

#include <cstdio>
#include <optional>

namespace mp = multiprocessing;

void producer(mp::Queue<std::optional<int>> queue) {
    for (int i = 0; i < 5; ++i) queue.put(i);
}

void consumer(mp::Queue<std::optional<int>> queue) {
    while (true) {
        auto item = queue.get();
        if (!item) break;
        fmt::print("consumed: {}\n", *item);
        std::fflush(stdout);  // Python: flush=True
    }
}

int main() {
    mp::Queue<std::optional<int>> q;
    mp::Process p1(producer, q);
    mp::Process p2(consumer, q);
    p1.start();
    p2.start();
    p1.join();
    q.put(std::nullopt);
    p2.join();
    fmt::print("done\n");
}
