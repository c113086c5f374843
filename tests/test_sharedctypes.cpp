// Value, Array, RawValue, RawArray and the typecodes, across real processes. Children's targets
// are free functions taking the objects as arguments, so every test runs under each start method
// (tests/CMakeLists.txt): under spawn and forkserver the objects travel as their regions.
#include <catch2/catch.hpp>

#include "helpers.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <forward_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <multiprocessing/process.hpp>
#include <multiprocessing/sharedctypes.hpp>

namespace mp = multiprocessing;
using test::check;
using test::finish;
using test::start;
using namespace std::chrono_literals;

namespace {

// A field of /proc/self/status in kB (VmRSS, RssShmem, ...).
long status_kb(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string key;
    long value = -1;
    while (in >> key) {
        if (key == std::string(field) + ":") {
            in >> value;
            return value;
        }
        std::getline(in, key);
    }
    return value;
}

static_assert(std::is_same_v<mp::typecode_t<'c'>, char>);
static_assert(std::is_same_v<mp::typecode_t<'u'>, wchar_t>);
static_assert(std::is_same_v<mp::typecode_t<'b'>, signed char>);
static_assert(std::is_same_v<mp::typecode_t<'B'>, unsigned char>);
static_assert(std::is_same_v<mp::typecode_t<'h'>, short>);
static_assert(std::is_same_v<mp::typecode_t<'H'>, unsigned short>);
static_assert(std::is_same_v<mp::typecode_t<'i'>, int>);
static_assert(std::is_same_v<mp::typecode_t<'I'>, unsigned int>);
static_assert(std::is_same_v<mp::typecode_t<'l'>, long>);
static_assert(std::is_same_v<mp::typecode_t<'L'>, unsigned long>);
static_assert(std::is_same_v<mp::typecode_t<'q'>, long long>);
static_assert(std::is_same_v<mp::typecode_t<'Q'>, unsigned long long>);
static_assert(std::is_same_v<mp::typecode_t<'f'>, float>);
static_assert(std::is_same_v<mp::typecode_t<'d'>, double>);

struct point_like {
    int x, y;
};

template <class L>
concept lockable = requires(L& l) {
    l.lock();
    l.unlock();
    { l.try_lock() } -> std::same_as<bool>;
    { l.try_lock_for(1ms) } -> std::same_as<bool>;
};
static_assert(lockable<mp::Value<int>>);
static_assert(lockable<mp::Array<double>>);
template <class T>
concept value_type_ok = requires { typename mp::Value<T>; };
static_assert(value_type_ok<point_like>);
static_assert(!value_type_ok<int*>);  // a pointer means nothing in another process
static_assert(!value_type_ok<std::string>);

struct point {
    int x;
    double y;
};

// ---- the children's targets ---------------------------------------------------------------

void seed_04(mp::Value<int> value1, mp::Value<double> value2, mp::Array<int> array) {
    value1.value() += 41;
    value2.value() *= 2;
    for (std::size_t i = 0; i < array.size(); ++i) array[i] = array[i] * 10;
}

void add_under_lock(mp::Value<long> v) {
    for (int i = 0; i < 20000; ++i) {
        std::scoped_lock g(v.get_lock());
        v.value() += 1;
    }
}

void bump_x(mp::Value<point> pt) { pt.value().x += 1; }

// A Value's own lock reaches the child as the same lock, re-entrant there too.
void check_locks(mp::Value<int> own, mp::Value<int> raw, mp::Value<int> shared_a,
                 mp::Array<double> shared_b, mp::Lock shared) {
    check(own.get_lock().get_if<mp::RLock>() != nullptr, "own lock is an RLock");
    check(!own.get_lock().try_lock(), "the parent holds the own lock");
    try {
        raw.get_lock();
        std::_Exit(2);
    } catch (const mp::ValueError&) {
    }
    check(shared_a.get_lock().get_if<mp::Lock>() != nullptr, "a shared Lock");
    check(shared.try_lock(), "the shared lock is free");
    check(!shared_b.get_lock().try_lock(), "and the same as the Array's");
    shared.release();
    own.value() = 6;
}

void raw_objects(mp::RawValue<int> r, mp::RawArray<char> chars, mp::RawArray<int> empty) {
    check(r.value() == 9, "RawValue");
    r.value() = 10;
    check(chars.size() == 2 && chars[1] == 'b', "RawArray");
    chars[0] = 'z';
    check(empty.size() == 0 && empty.begin() == empty.end(), "empty RawArray");
}

void add_to_array(mp::Array<int> a, mp::Value<int> total, int add) {
    for (int round = 0; round < 50; ++round) {
        std::scoped_lock g(a);
        for (auto& x : a) x += add;
        total.value() += add;  // the same RLock: re-entrant
        std::scoped_lock g2(total);
    }
}

void touch_big(mp::Array<char> big, mp::Value<long> child_rss) {
    constexpr std::size_t size = std::size_t(1) << 30;
    check(big.size() == size, "size");
    check(big[1] == 'p', "the child sees the parent's write");
    for (std::size_t off : {std::size_t(0), size / 2, size - 1}) big[off] = 'x';
    child_rss.value() = status_kb("VmRSS");
}

}  // namespace

TEST_CASE("Value: seed 04 across a process (int, double, Array)") {
    mp::Value<mp::typecode_t<'i'>> value1(1);
    mp::Value<mp::typecode_t<'d'>> value2(3.14);
    mp::Array<mp::typecode_t<'i'>> array{1, 2, 3, 4};
    auto p = start(seed_04, value1, value2, array);
    REQUIRE(finish(p) == 0);
    REQUIRE(value1.value() == 42);
    REQUIRE(value2.value() == 6.28);
    REQUIRE(std::vector<int>(array.begin(), array.end()) == std::vector<int>{10, 20, 30, 40});
}

TEST_CASE("Value: two processes adding under its lock reach the exact total") {
    mp::Value<long> v(0);
    auto p1 = start(add_under_lock, v);
    auto p2 = start(add_under_lock, v);
    REQUIRE(finish(p1) == 0);
    REQUIRE(finish(p2) == 0);
    REQUIRE(v.value() == 40000);
}

TEST_CASE("Value: the lock is an RLock by default, none with lock=false, or a shared one") {
    mp::Value<int> v(5);
    REQUIRE(v.get_lock().get_if<mp::RLock>() != nullptr);
    {
        std::scoped_lock g(v);  // Python's `with v:`
        std::scoped_lock again(v.get_lock());  // re-entrant
        REQUIRE(v.value() == 5);
    }
    mp::Value<int> raw(7, false);
    REQUIRE(raw.value() == 7);
    REQUIRE_THROWS_AS(raw.get_lock(), mp::ValueError);
    REQUIRE_THROWS_AS(raw.acquire(), mp::ValueError);

    mp::Lock shared;
    mp::Value<int> a(1, shared);
    mp::Array<double> b(3, shared);
    REQUIRE(a.get_lock().get_if<mp::Lock>() != nullptr);
    {
        std::scoped_lock g(a);
        REQUIRE_FALSE(b.get_lock().try_lock());  // the same lock
        REQUIRE_FALSE(shared.acquire(false));
    }
    // A child gets the same locks: the Value's own one, none, and the shared one.
    std::scoped_lock g(v);
    auto p = start(check_locks, v, raw, a, b, shared);
    REQUIRE(finish(p) == 0);
    REQUIRE(v.value() == 6);
}

TEST_CASE("Value: default, struct and get_obj") {
    mp::Value<double> d;
    REQUIRE(d.value() == 0.0);
    mp::Value<point> pt(point{3, 4.5});
    auto p = start(bump_x, pt);
    REQUIRE(finish(p) == 0);
    REQUIRE(pt.value().x == 4);
    REQUIRE(pt.value().y == 4.5);
    mp::RawValue<int> r = mp::Value<int>(9).get_obj();
    REQUIRE(r.value() == 9);
    mp::RawValue<unsigned char> byte(std::uint8_t(200));
    REQUIRE(byte.value() == 200);

    mp::RawArray<char> chars{'a', 'b'};
    auto q = start(raw_objects, r, chars, mp::RawArray<int>());
    REQUIRE(finish(q) == 0);
    REQUIRE(r.value() == 10);
    REQUIRE(chars[0] == 'z');
}

TEST_CASE("Array: constructors, indexing, iteration and span") {
    mp::Array<double> zeros(10);
    REQUIRE(zeros.size() == 10);
    for (double x : zeros) REQUIRE(x == 0.0);

    mp::Array<int> listed{1, 2, 3, 4};
    REQUIRE(listed.size() == 4);
    REQUIRE(listed[3] == 4);

    std::vector<long> src{5, 6, 7};
    mp::Array<long> from_vector(src);
    REQUIRE(std::vector<long>(from_vector.begin(), from_vector.end()) == src);

    std::forward_list<short> unsized{0, 1, 4, 9, 16};  // no size(): collected first
    mp::Array<int> from_list(unsized);
    REQUIRE(std::vector<int>(from_list.begin(), from_list.end()) == std::vector<int>{0, 1, 4, 9, 16});

    mp::Array<int> empty(0);
    REQUIRE(empty.size() == 0);
    REQUIRE(empty.begin() == empty.end());

    std::span<int> view = listed.span();
    view[0] = 100;
    REQUIRE(listed[0] == 100);
    REQUIRE(listed.get_obj().data() == listed.data());

    mp::RawArray<mp::typecode_t<'c'>> chars{'a', 'b'};
    REQUIRE(chars[1] == 'b');

    struct with_default {
        int x = 7;
    };
    mp::RawArray<with_default> defaults(3);
    REQUIRE(defaults[2].x == 7);  // T() runs when zeros are not T()
}

TEST_CASE("Array: a child's writes are seen by the parent, under a shared lock") {
    mp::RLock lock;
    mp::Array<int> a(1000, lock);
    mp::Value<int> total(0, lock);
    auto p1 = start(add_to_array, a, total, 1);
    auto p2 = start(add_to_array, a, total, 2);
    REQUIRE(finish(p1) == 0);
    REQUIRE(finish(p2) == 0);
    for (int x : a) REQUIRE(x == 150);
    REQUIRE(total.value() == 150);
}

TEST_CASE("Array: 1 GiB handed to a child is one shared mapping, not a copy") {
    constexpr std::size_t size = std::size_t(1) << 30;
    const long rss_before = status_kb("VmRSS");
    mp::Array<char> big(size);  // with its lock, in the same mapping
    mp::Value<long> child_rss(0, false);
    big[1] = 'p';
    auto p = start(touch_big, big, child_rss);
    REQUIRE(finish(p) == 0);
    REQUIRE(big[0] == 'x');
    REQUIRE(big[size / 2] == 'x');
    REQUIRE(big[size - 1] == 'x');
    REQUIRE(big[size / 4] == 0);
    // Neither side holds 1 GiB: only the written pages exist.
    const long grown_kb = status_kb("VmRSS") - rss_before;
    INFO("parent RSS grew by " << grown_kb << " kB; child RSS " << child_rss.value() << " kB");
    REQUIRE(grown_kb < 64 * 1024);
    REQUIRE(child_rss.value() > 0);
    REQUIRE(child_rss.value() < rss_before + 64 * 1024);

    // And it is one mapping of one shared file.
    std::ifstream maps("/proc/self/maps");
    std::string line;
    int mappings = 0;
    const auto addr = reinterpret_cast<std::uintptr_t>(big.data());
    while (std::getline(maps, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2) continue;
        if (addr >= lo && addr < hi) {
            ++mappings;
            REQUIRE(hi - lo >= size);
            REQUIRE(line.find("memfd:") != std::string::npos);
            REQUIRE(line.find(" rw-s ") != std::string::npos);  // shared, not private
        }
    }
    REQUIRE(mappings == 1);
}
