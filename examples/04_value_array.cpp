// Shared Value and Array with typecodes.
#include <cstddef>

#include <fmt/ranges.h>

#include <multiprocessing.hpp>
#include <multiprocessing/sharedctypes.hpp>

namespace mp = multiprocessing;

void work(mp::Value<mp::typecode_t<'i'>> v, mp::Value<mp::typecode_t<'d'>> d,
          mp::Array<mp::typecode_t<'i'>> a) {
    v.value() += 41;
    d.value() *= 2;
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = a[i] * 10;
}

int main() {
    mp::Value<mp::typecode_t<'i'>> value1(1);
    mp::Value<mp::typecode_t<'d'>> value2(3.14);
    mp::Array<mp::typecode_t<'i'>> array{1, 2, 3, 4};
    mp::Process p(work, value1, value2, array);
    p.start();
    p.join();
    fmt::print("{} {} {}\n", value1.value(), value2.value(), array);
}
