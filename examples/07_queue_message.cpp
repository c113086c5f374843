// Seed example 07: a child sends a message to the parent through a Queue.
#include <multiprocessing.hpp>

#include <fmt/core.h>

#include <string>

namespace mp = multiprocessing;

void worker(mp::Queue<std::string> q) { q.put("message from the child process"); }

int main() {
    mp::Queue<std::string> q;
    mp::Process p(worker, q);
    p.start();
    fmt::print("{}\n", q.get());
    p.join();
}
