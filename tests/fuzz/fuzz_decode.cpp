// libFuzzer target: arbitrary bytes fed to every decoding entry point must either decode or throw
// mp::SerializationError; anything else (a crash, a sanitizer report, another exception, an
// allocation the input cannot justify) is a bug. The first byte picks the target, so coverage
// feedback stays with one type.
//
// Built with -DMP_FUZZ_MAKE_SEEDS instead, it writes a seed corpus of valid inputs:
//     fuzz_seeds corpus/ && fuzz_decode corpus/ -max_total_time=60
#include <multiprocessing/serialization.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace mp = multiprocessing;

namespace {

enum class Color : std::uint8_t { red, green };
struct Point {
    double x, y;
};
struct Padded {
    char tag;
    int value;
    bool flag;
};
struct Shape {
    std::string name;
    std::vector<Point> points;
    std::optional<Color> color;
    std::vector<Padded> extras;
};
struct Tree {
    int value = 0;
    std::vector<Tree> children;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value, children);
    }
};
struct Empty {};

using Mixed = std::tuple<std::vector<std::string>, std::map<int, std::optional<double>>,
                         std::variant<std::monostate, std::vector<int>, std::string, Point>, bool,
                         std::chrono::milliseconds, std::complex<float>>;
using Containers = std::pair<std::unordered_map<std::string, std::vector<std::pair<int, bool>>>,
                             std::tuple<std::set<std::int16_t>, std::deque<std::list<char>>,
                                        std::multimap<std::uint8_t, std::string>,
                                        std::unordered_set<std::uint32_t>, std::vector<bool>>>;
using Empties = std::tuple<std::vector<std::monostate>, std::vector<Empty>,
                           std::vector<std::vector<std::monostate>>, std::array<Point, 2>>;

template <class T>
void decode(std::span<const std::byte> bytes) {
    try {
        T v = mp::deserialize<T>(bytes);
        // Whatever decodes must encode and decode again.
        (void)mp::deserialize<T>(mp::serialize(v));
    } catch (const mp::SerializationError&) {
    }
    try {
        (void)mp::detail::unpack_message<T>(bytes);
    } catch (const mp::SerializationError&) {
    }
}

int seed_count = 0;

template <class T>
void write_seed(const std::string& dir, std::uint8_t selector, const T& value, bool message) {
    std::vector<std::byte> bytes{std::byte{selector}};
    if (message)
        mp::detail::pack_message_into(bytes, value);
    else
        mp::serialize_into(bytes, value);
    std::ofstream(dir + "/seed" + std::to_string(seed_count++), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

#ifndef MP_FUZZ_MAKE_SEEDS

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
    switch (data[0] % 6) {
        case 0:
            decode<Shape>(bytes);
            break;
        case 1:
            decode<Mixed>(bytes);
            break;
        case 2:
            decode<Containers>(bytes);
            break;
        case 3:
            decode<Tree>(bytes);
            break;
        case 4:
            decode<Empties>(bytes);
            break;
        case 5:
            try {
                mp::detail::rethrow_packed_exception(bytes);
            } catch (const std::exception&) {  // every rebuilt type, RemoteError included
            }
            break;
    }
    return 0;
}

#else

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    for (bool message : {false, true}) {
        write_seed(dir, 0, Shape{"tri", {{0, 0}, {1, 1}}, Color::green, {{'a', 1, true}}}, message);
        write_seed(dir, 1,
                   Mixed{{"a", ""},
                         {{1, 2.5}, {2, std::nullopt}},
                         Point{1, 2},
                         true,
                         std::chrono::milliseconds(5),
                         {1, 2}},
                   message);
        write_seed(dir, 1, Mixed{{}, {}, std::string("s"), false, {}, {}}, message);
        write_seed(dir, 2,
                   Containers{{{"k", {{1, true}}}}, {{1, 2}, {{'x'}}, {{1, "v"}}, {7}, {true}}},
                   message);
        write_seed(dir, 3, Tree{1, {{2, {}}, {3, {{4, {}}}}}}, message);
        write_seed(dir, 4, Empties{std::vector<std::monostate>(3), {Empty{}}, {{{}, {}}}, {}},
                   message);
    }
    std::vector<std::byte> bytes{std::byte{5}};
    auto packed = mp::detail::pack_exception(std::make_exception_ptr(
        std::system_error(std::make_error_code(std::errc::timed_out), "x")));
    bytes.insert(bytes.end(), packed.begin(), packed.end());
    std::ofstream(dir + "/exception", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

#endif
