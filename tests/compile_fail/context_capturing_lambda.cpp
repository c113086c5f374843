// A context's Process must be able to travel to a spawned child: captures cannot.
// expect: a lambda's captures cannot be sent there
#include <multiprocessing/context.hpp>

int main() {
    auto ctx = multiprocessing::get_context("spawn");
    int offset = 3;
    auto p = ctx.Process([offset] { (void)offset; });
    p.start();
    p.join();
}
