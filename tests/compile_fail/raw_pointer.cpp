// An aggregate with a raw pointer field: the address means nothing in another process.
// expect: cannot cross a process boundary: a pointer is an address
// expect: WithPointer
#include <multiprocessing/serialization.hpp>

struct WithPointer {
    int id;
    const char* label;
};

int main() {
    return int(multiprocessing::serialize(WithPointer{1, "x"}).size());
}
