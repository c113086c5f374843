// A std::function cannot be sent, whatever it wraps.
// expect: cannot cross a process boundary: it is neither a supported standard type
// expect: std::function
#include <functional>

#include <multiprocessing/serialization.hpp>

int main() {
    std::vector<std::byte> out;
    multiprocessing::serialize_into(out, std::function<int(int)>([](int x) { return x; }));
}
