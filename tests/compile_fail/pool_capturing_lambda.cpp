// A Pool task that captures cannot be sent to a worker: Python's "can't pickle a lambda".
// expect: a lambda with captures cannot be sent to another process
#include <multiprocessing/pool.hpp>

#include <vector>

int main() {
    multiprocessing::Pool pool(1);
    int offset = 3;
    return int(pool.map([offset](int x) { return x + offset; }, std::vector{1, 2}).size());
}
