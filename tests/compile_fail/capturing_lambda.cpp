// A closure with captures, received as a typed message.
// expect: cannot cross a process boundary: it is neither a supported standard type
// expect: lambda
#include <multiprocessing/serialization.hpp>

int main() {
    int base = 3;
    auto add = [base](int x) { return base + x; };
    auto bytes = multiprocessing::detail::pack_message(add);
    (void)multiprocessing::detail::unpack_message<decltype(add)>(bytes);
}
