// mp::serializable, the pickle stand-in: round trips, the bulk path, every decoding error, typed
// messages and exceptions crossing as type name + message.
#include <multiprocessing/serialization.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <random>

namespace mp = multiprocessing;
using bytes_t = std::vector<std::byte>;

namespace {

template <class T>
T round_trip(const T& v) {
    return mp::deserialize<T>(mp::serialize(v));
}

bytes_t make_bytes(std::initializer_list<int> values) {
    bytes_t out;
    for (int v : values) out.push_back(std::byte(v));
    return out;
}

enum class Color : std::uint8_t { red = 1, green = 2 };
enum Plain { plain_a = -5, plain_b = 70000 };

struct Point {
    double x, y;
};
struct Padded {  // 3 bytes of padding after `tag`
    char tag;
    int value;
};
struct Shape {
    std::string name;
    std::vector<Point> points;
    std::optional<Color> color;
};
struct Drawing {
    std::vector<Shape> shapes;
    std::map<std::string, Point> anchors;
};
struct Empty {};

class Account {  // private state, member hook
public:
    Account() = default;
    Account(std::string owner, double balance) : owner_(std::move(owner)), balance_(balance) {}
    const std::string& owner() const { return owner_; }
    double balance() const { return balance_; }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(owner_, balance_);
    }

private:
    std::string owner_;
    double balance_ = 0;
};

namespace legacy {
class Gauge {  // private state, free hook found by ADL
public:
    Gauge() = default;
    explicit Gauge(int level) : level_(level) {}
    int level() const { return level_; }
    int& level_ref() { return level_; }

private:
    int level_ = 0;
};
template <class Archive>
void serialize(Archive& ar, Gauge& g) {
    ar(g.level_ref());
}
}  // namespace legacy

struct Tree {  // self-referential, possible only through a hook
    int value = 0;
    std::vector<Tree> children;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value, children);
    }
    bool operator==(const Tree&) const = default;
};

struct Percent {  // a hook that validates on load
    int value = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value);
        if constexpr (Archive::is_loading) {
            if (value < 0 || value > 100) throw mp::SerializationError("Percent out of range");
        }
    }
};

struct Nothing {  // a hook that writes nothing
    template <class Archive>
    void serialize(Archive&) {}
};

struct Opaque {
    int get() const { return x_; }

private:
    int x_ = 0;
};
struct WithPointer {
    int a;
    int* p;
};
struct WithReference {
    int& r;
};
struct WithConst {
    const int c;
};
struct HookNoDefault {
    explicit HookNoDefault(int) {}
    template <class Archive>
    void serialize(Archive&) {}
};
union Number {
    int i;
    float f;
};

struct Thrower {
    Thrower() = default;
    Thrower(Thrower&&) { throw std::runtime_error("move"); }
    Thrower& operator=(Thrower&&) = default;
    template <class Archive>
    void serialize(Archive&) {}
};

struct MyError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("type_name is a tidy compile-time name") {
    static_assert(mp::type_name<int>() == "int");
    STATIC_REQUIRE(mp::type_name<std::string>() == "std::string");
    CHECK(mp::type_name<std::vector<int>>() == "std::vector<int>");
    CHECK(mp::type_name<std::map<std::string, int>>().starts_with("std::map<std::string, int>"));
    CHECK(mp::type_name<Point>().find("Point") != std::string_view::npos);
    CHECK(mp::type_name<int>().data()[3] == '\0');  // usable as a C string
    CHECK(mp::type_name<int>() != mp::type_name<long>());
}

TEST_CASE("the serializable concept accepts what pickle would and rejects the rest") {
    STATIC_REQUIRE(mp::serializable<int>);
    STATIC_REQUIRE(mp::serializable<std::byte>);
    STATIC_REQUIRE(mp::serializable<Color>);
    STATIC_REQUIRE(mp::serializable<std::string>);
    STATIC_REQUIRE(mp::serializable<
                   std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>>>);
    STATIC_REQUIRE(mp::serializable<std::variant<std::monostate, int, std::string>>);
    STATIC_REQUIRE(mp::serializable<std::chrono::milliseconds>);
    STATIC_REQUIRE(mp::serializable<std::complex<double>>);
    STATIC_REQUIRE(mp::serializable<Drawing>);
    STATIC_REQUIRE(mp::serializable<Empty>);
    STATIC_REQUIRE(mp::serializable<Account>);
    STATIC_REQUIRE(mp::serializable<legacy::Gauge>);
    STATIC_REQUIRE(mp::serializable<Tree>);

    auto captureless = [](int x) { return x; };
    int n = 0;
    auto capturing = [&n] { return n; };
    STATIC_REQUIRE_FALSE(mp::serializable<int*>);
    STATIC_REQUIRE_FALSE(mp::serializable<int&>);
    STATIC_REQUIRE_FALSE(mp::serializable<const int>);
    STATIC_REQUIRE_FALSE(mp::serializable<int[3]>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::nullptr_t>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::function<void()>>);
    STATIC_REQUIRE_FALSE(mp::serializable<decltype(captureless)>);
    STATIC_REQUIRE_FALSE(mp::serializable<decltype(capturing)>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::string_view>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::span<const int>>);
    STATIC_REQUIRE_FALSE(mp::serializable<Opaque>);
    STATIC_REQUIRE_FALSE(mp::serializable<WithPointer>);
    STATIC_REQUIRE_FALSE(mp::serializable<WithReference>);
    STATIC_REQUIRE_FALSE(mp::serializable<WithConst>);
    STATIC_REQUIRE_FALSE(mp::serializable<HookNoDefault>);
    STATIC_REQUIRE_FALSE(mp::serializable<Number>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::vector<std::unique_ptr<int>>>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::pair<int, void*>>);
    STATIC_REQUIRE_FALSE(mp::serializable<std::optional<Opaque>>);
}

TEMPLATE_TEST_CASE("scalars round-trip at their limits", "", bool, char, signed char, unsigned char,
                   wchar_t, char8_t, char16_t, char32_t, short, unsigned short, int, unsigned, long,
                   unsigned long, long long, unsigned long long, float, double) {
    for (TestType v : {std::numeric_limits<TestType>::lowest(), TestType{},
                       std::numeric_limits<TestType>::max()}) {
        auto bytes = mp::serialize(v);
        CHECK(bytes.size() == sizeof(TestType));
        CHECK(mp::deserialize<TestType>(bytes) == v);
    }
}

TEST_CASE("other leaf types round-trip") {
    CHECK(round_trip(std::byte{0xab}) == std::byte{0xab});
    CHECK(round_trip(Color::green) == Color::green);
    CHECK(round_trip(plain_a) == plain_a);
    CHECK(round_trip(plain_b) == plain_b);
    CHECK(round_trip(-1.5L) == -1.5L);
    CHECK(round_trip(std::numeric_limits<double>::infinity()) ==
          std::numeric_limits<double>::infinity());
    CHECK(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
    CHECK(round_trip(std::complex<double>(1.5, -2)) == std::complex<double>(1.5, -2));
    CHECK(round_trip(std::complex<float>(3, 4)) == std::complex<float>(3, 4));
    CHECK(round_trip(std::chrono::milliseconds(-1234)) == std::chrono::milliseconds(-1234));
    CHECK(round_trip(std::chrono::duration<double>(0.25)) == std::chrono::duration<double>(0.25));
    auto now = std::chrono::system_clock::now();
    CHECK(round_trip(now) == now);
    CHECK(mp::serialize(std::monostate{}).empty());
    CHECK(round_trip(std::monostate{}) == std::monostate{});
}

TEST_CASE("strings round-trip, embedded NULs and wide characters included") {
    using namespace std::string_literals;
    for (std::string s : {""s, "hello"s, "a\0b\0"s, std::string(100000, 'x')}) {
        CHECK(round_trip(s) == s);
    }
    CHECK(round_trip(std::u16string(u"h\u00e9llo")) == u"h\u00e9llo");
    CHECK(round_trip(std::wstring(L"wide")) == L"wide");
    CHECK(mp::serialize(std::string("abc")).size() == 4);  // one length byte + 3
}

TEST_CASE("standard containers round-trip") {
    CHECK(round_trip(std::vector<int>{}) == std::vector<int>{});
    CHECK(round_trip(std::vector<int>{1, -2, 3}) == std::vector<int>{1, -2, 3});
    CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
    CHECK(round_trip(std::array<short, 3>{1, 2, 3}) == std::array<short, 3>{1, 2, 3});
    CHECK(round_trip(std::array<std::string, 2>{"a", "b"}) == std::array<std::string, 2>{"a", "b"});
    CHECK(round_trip(std::deque<std::string>{"x", "y"}) == std::deque<std::string>{"x", "y"});
    CHECK(round_trip(std::list<double>{1.5, 2.5}) == std::list<double>{1.5, 2.5});
    std::map<std::string, int> m{{"one", 1}, {"two", 2}};
    CHECK(round_trip(m) == m);
    std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}, {3, "three"}};
    CHECK(round_trip(um) == um);
    std::set<int> s{3, 1, 2};
    CHECK(round_trip(s) == s);
    std::unordered_set<std::string> us{"a", "bb", "ccc"};
    CHECK(round_trip(us) == us);
    std::multimap<int, int> mm{{1, 1}, {1, 2}, {2, 3}};
    CHECK(round_trip(mm) == mm);
    std::multiset<int> ms{1, 1, 2};
    CHECK(round_trip(ms) == ms);
    std::vector<std::monostate> monos(1000);
    CHECK(round_trip(monos).size() == 1000);
    std::vector<Nothing> nothings(5000);
    CHECK(round_trip(nothings).size() == 5000);
}

TEST_CASE("pair, tuple, optional and variant round-trip") {
    CHECK(round_trip(std::pair<int, std::string>{7, "seven"}) ==
          std::pair<int, std::string>{7, "seven"});
    auto t = std::tuple<int, std::string, double, bool>{1, "x", 2.5, true};
    CHECK(round_trip(t) == t);
    CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
    CHECK(round_trip(std::optional<std::string>{}) == std::nullopt);
    CHECK(round_trip(std::optional<std::string>{"here"}) == "here");
    using V = std::variant<int, std::string, std::vector<double>>;
    for (V v : {V{5}, V{std::string("five")}, V{std::vector<double>{5.5, 6.5}}}) {
        V back = round_trip(v);
        CHECK(back.index() == v.index());
        CHECK(back == v);
    }
    using W = std::variant<std::monostate, int>;
    CHECK(round_trip(W{}).index() == 0);
}

TEST_CASE("nested combinations round-trip") {
    std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>> m{
        {"a", {std::pair{1, std::string("one")}, std::nullopt, std::pair{2, std::string()}}},
        {"", {}},
    };
    CHECK(round_trip(m) == m);

    Drawing d{{{"triangle", {{0, 0}, {1, 0}, {0, 1}}, Color::red}, {"dot", {{2, 2}}, std::nullopt}},
              {{"origin", {0, 0}}}};
    Drawing back = round_trip(d);
    REQUIRE(back.shapes.size() == 2);
    CHECK(back.shapes[0].name == "triangle");
    CHECK(back.shapes[0].points.size() == 3);
    CHECK(back.shapes[0].points[2].y == 1);
    CHECK(back.shapes[0].color == Color::red);
    CHECK(back.shapes[1].color == std::nullopt);
    CHECK(back.anchors.at("origin").x == 0);

    Account acc = round_trip(Account("ada", 12.5));
    CHECK(acc.owner() == "ada");
    CHECK(acc.balance() == 12.5);
    CHECK(round_trip(legacy::Gauge(42)).level() == 42);
    auto accounts = round_trip(std::vector<Account>{{"a", 1}, {"b", 2}});
    REQUIRE(accounts.size() == 2);
    CHECK(accounts[1].owner() == "b");

    CHECK(round_trip(Percent{42}).value == 42);
    CHECK_THROWS_WITH(mp::deserialize<Percent>(mp::serialize(200)), "Percent out of range");

    Tree tree{1, {{2, {}}, {3, {{4, {}}}}}};
    CHECK(round_trip(tree) == tree);
    CHECK(mp::serialize(Empty{}).empty());
}

TEST_CASE("contiguous trivially copyable data is encoded in bulk") {
    STATIC_REQUIRE(mp::detail::bulk<Point>());
    STATIC_REQUIRE(mp::detail::bulk<std::array<Point, 4>>());
    STATIC_REQUIRE(mp::detail::bulk<std::complex<double>>());
    STATIC_REQUIRE_FALSE(mp::detail::bulk<Padded>());  // padding would leak uninitialised bytes
    STATIC_REQUIRE_FALSE(mp::detail::bulk<bool>());    // each bool is validated
    STATIC_REQUIRE(mp::detail::contiguous_bulk<std::vector<Point>>());
    STATIC_REQUIRE(mp::detail::contiguous_bulk<std::string>());

    std::vector<Point> points{{1, 2}, {3, 4}};
    CHECK(mp::serialize(points).size() == 1 + 2 * sizeof(Point));
    CHECK(round_trip(points)[1].y == 4);
    std::vector<Padded> padded{{'a', 1}, {'b', 2}};
    CHECK(mp::serialize(padded).size() == 1 + 2 * (1 + sizeof(int)));  // field by field
    CHECK(round_trip(padded)[1].value == 2);

    std::vector<double> big(10'000'000);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = double(i) * 0.5;
    auto bytes = mp::serialize(big);
    CHECK(bytes.size() == 4 + big.size() * sizeof(double));  // a 4-byte varint length
    auto back = mp::deserialize<std::vector<double>>(bytes);
    REQUIRE(back.size() == big.size());
    CHECK(std::memcmp(back.data(), big.data(), big.size() * sizeof(double)) == 0);
}

TEST_CASE("writer and reader put several values in one buffer") {
    bytes_t buf{std::byte{0xff}};  // whatever the caller had before
    mp::detail::writer w(buf);
    w.write(std::uint32_t{7});
    w(std::string("payload"), 2.5);
    w.write_size(300);
    CHECK(&w.buffer() == &buf);

    mp::detail::reader r{std::span(buf).subspan(1)};
    CHECK(r.read<std::uint32_t>() == 7);
    std::string s;
    double d = 0;
    r(s, d);
    CHECK(s == "payload");
    CHECK(d == 2.5);
    CHECK(r.remaining() == 2);
    CHECK(r.read_size() == 300);
    CHECK(r.remaining() == 0);
    CHECK_NOTHROW(r.expect_end());
    CHECK_THROWS_AS(r.read<int>(), mp::SerializationError);
}

TEST_CASE("serialize_into appends, and leaves the buffer alone when it throws") {
    bytes_t out = make_bytes({1, 2});
    mp::serialize_into(out, std::int16_t{3});
    CHECK(out == make_bytes({1, 2, 3, 0}));

    // A variant left valueless by a throwing move cannot be sent.
    std::vector<std::variant<int, Thrower>> values(2);
    try {
        values[1].emplace<1>(Thrower{});
    } catch (const std::runtime_error&) {
    }
    REQUIRE(values[1].valueless_by_exception());
    CHECK_THROWS_WITH(mp::serialize_into(out, values), Catch::Contains("valueless"));
    CHECK(out == make_bytes({1, 2, 3, 0}));
}

TEST_CASE("every truncation of a valid encoding throws SerializationError") {
    Drawing d{{{"triangle", {{0, 0}, {1, 0}}, Color::red}, {"dot", {}, std::nullopt}},
              {{"origin", {0, 0}}}};
    using Complex = std::tuple<Drawing, std::map<std::string, std::vector<std::optional<int>>>,
                               std::variant<int, std::string>, std::vector<bool>, Tree, Account>;
    Complex value{d,
                  {{"k", {1, std::nullopt}}},
                  std::string("v"),
                  {true, false},
                  Tree{1, {{2, {}}}},
                  Account("x", 1)};
    auto bytes = mp::serialize(value);
    REQUIRE_NOTHROW(mp::deserialize<Complex>(bytes));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        INFO("prefix of " << n << " bytes out of " << bytes.size());
        CHECK_THROWS_AS(mp::deserialize<Complex>(std::span(bytes).first(n)),
                        mp::SerializationError);
    }

    auto message = mp::detail::pack_message(value);
    for (std::size_t n = 0; n < message.size(); ++n)
        CHECK_THROWS_AS(mp::detail::unpack_message<Complex>(std::span(message).first(n)),
                        mp::SerializationError);

    auto exception = mp::detail::pack_exception(std::make_exception_ptr(std::out_of_range("x")));
    for (std::size_t n = 0; n < exception.size(); ++n)
        CHECK_THROWS_AS(mp::detail::rethrow_packed_exception(std::span(exception).first(n)),
                        mp::SerializationError);
}

TEST_CASE("corrupted bytes throw SerializationError or decode, never crash") {
    using T = std::tuple<std::vector<std::string>, std::map<int, std::optional<double>>,
                         std::variant<std::monostate, std::vector<int>, std::string>, Drawing>;
    T value{{"a", "bb"},
            {{1, 2.5}, {2, std::nullopt}},
            std::vector<int>{1, 2},
            Drawing{{{"s", {{1, 1}}, Color::green}}, {}}};
    const auto bytes = mp::serialize(value);
    std::mt19937 rng(1234);
    int errors = 0;
    for (int i = 0; i < 20000; ++i) {
        auto b = bytes;
        for (int flips = 1 + int(rng() % 3); flips > 0; --flips)
            b[rng() % b.size()] = std::byte(rng());
        try {
            (void)mp::deserialize<T>(b);
        } catch (const mp::SerializationError&) {
            ++errors;
        }
    }
    CHECK(errors > 0);
}

TEST_CASE("length prefixes the input cannot back are rejected before allocating") {
    // 2^60 as a varint, then nothing.
    auto huge = make_bytes({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10});
    CHECK_THROWS_WITH(mp::deserialize<std::vector<int>>(huge), Catch::Contains("exceeds"));
    CHECK_THROWS_AS(mp::deserialize<std::string>(huge), mp::SerializationError);
    CHECK_THROWS_AS(mp::deserialize<std::vector<std::string>>(huge), mp::SerializationError);
    CHECK_THROWS_AS((mp::deserialize<std::map<int, int>>(huge)), mp::SerializationError);
    CHECK_THROWS_AS(mp::deserialize<std::vector<std::monostate>>(huge), mp::SerializationError);
    CHECK_THROWS_AS(mp::deserialize<std::vector<Nothing>>(huge), mp::SerializationError);
    CHECK_THROWS_AS(mp::deserialize<std::deque<Empty>>(huge), mp::SerializationError);

    // 3 ints claimed, 8 bytes present.
    CHECK_THROWS_AS(mp::deserialize<std::vector<int>>(make_bytes({3, 1, 0, 0, 0, 2, 0, 0, 0})),
                    mp::SerializationError);
    // A varint longer than 64 bits.
    CHECK_THROWS_WITH(mp::deserialize<std::string>(
                          make_bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})),
                      Catch::Contains("overflows"));
    // Zero-size elements within the cap decode, beyond it they do not.
    bytes_t million{std::byte{0x80}, std::byte{0x80}, std::byte{0x40}};  // 2^20
    CHECK(mp::deserialize<std::vector<std::monostate>>(million).size() == (1u << 20));
    bytes_t too_many{std::byte{0x80}, std::byte{0x80}, std::byte{0x80}, std::byte{0x01}};
    CHECK_THROWS_AS(mp::deserialize<std::vector<std::monostate>>(too_many), mp::SerializationError);
}

TEST_CASE("data nested deeper than the reader allows is rejected, not a stack overflow") {
    auto nested = [](int depth) {
        bytes_t out;
        for (int i = 0; i < depth; ++i)
            out.insert(out.end(),
                       {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}});
        out.insert(out.end(), 5, std::byte{0});
        return out;
    };
    CHECK_NOTHROW(mp::deserialize<Tree>(nested(900)));
    CHECK_THROWS_WITH(mp::deserialize<Tree>(nested(100000)), Catch::Contains("nest deeper"));
}

TEST_CASE("invalid values throw SerializationError with context") {
    using V = std::variant<int, std::string>;
    CHECK_THROWS_WITH(mp::deserialize<V>(make_bytes({2, 0, 0, 0, 0})),
                      Catch::Contains("variant index 2"));
    CHECK_THROWS_WITH(mp::deserialize<bool>(make_bytes({2})), Catch::Contains("bool"));
    CHECK_THROWS_AS(mp::deserialize<std::optional<int>>(make_bytes({7, 0, 0, 0, 0})),
                    mp::SerializationError);
    CHECK_THROWS_AS(mp::deserialize<std::vector<bool>>(make_bytes({1, 3})), mp::SerializationError);
    CHECK_THROWS_WITH(mp::deserialize<std::set<std::uint8_t>>(make_bytes({2, 5, 5})),
                      Catch::Contains("duplicate"));
    CHECK_THROWS_WITH(mp::deserialize<int>(make_bytes({1, 0, 0, 0, 9})),
                      Catch::Contains("trailing"));
    CHECK_THROWS_WITH(mp::deserialize<int>(make_bytes({1, 0})), Catch::Contains("truncated"));
    CHECK_THROWS_AS(mp::deserialize<int>({}), mp::SerializationError);
    CHECK(mp::deserialize<Color>(make_bytes({2})) == Color::green);  // from the underlying byte
}

TEST_CASE("typed messages name both types on a mismatch") {
    auto message = mp::detail::pack_message(std::string("hello"));
    CHECK(mp::detail::unpack_message<std::string>(message) == "hello");
    CHECK_THROWS_WITH(
        mp::detail::unpack_message<int>(message),
        "mp::unpack_message: received a message of type std::string but expected int");
    CHECK_THROWS_AS(mp::detail::unpack_message<std::vector<char>>(message), mp::SerializationError);

    bytes_t two;
    mp::detail::pack_message_into(two, 1);
    std::size_t first = two.size();
    mp::detail::pack_message_into(two, Point{1, 2});
    CHECK(mp::detail::unpack_message<int>(std::span(two).first(first)) == 1);
    CHECK(mp::detail::unpack_message<Point>(std::span(two).subspan(first)).y == 2);

    auto bad_magic = message;
    bad_magic[0] = std::byte{0};
    CHECK_THROWS_WITH(mp::detail::unpack_message<std::string>(bad_magic), Catch::Contains("magic"));
    auto trailing = message;
    trailing.push_back(std::byte{0});
    CHECK_THROWS_WITH(mp::detail::unpack_message<std::string>(trailing),
                      Catch::Contains("trailing"));
    // A plain encoding is not a message.
    CHECK_THROWS_AS(mp::detail::unpack_message<std::string>(mp::serialize(std::string("x"))),
                    mp::SerializationError);
}

namespace {

template <class E>
void check_comes_back_as_itself(const E& original) {
    auto packed = mp::detail::pack_exception(std::make_exception_ptr(original));
    try {
        mp::detail::rethrow_packed_exception(packed);
    } catch (const std::exception& e) {
        CHECK(typeid(e) == typeid(E));
        CHECK(std::string(e.what()) == original.what());
        return;
    }
    FAIL("nothing was thrown");
}

}  // namespace

TEMPLATE_TEST_CASE("registered exceptions come back as their own type with their message", "",
                   std::logic_error, std::domain_error, std::invalid_argument, std::length_error,
                   std::out_of_range, std::runtime_error, std::range_error, std::overflow_error,
                   std::underflow_error, mp::ProcessError, mp::AuthenticationError,
                   mp::TimeoutError, mp::Empty, mp::Full, mp::BrokenBarrierError, mp::EOFError,
                   mp::ValueError, mp::SerializationError, mp::BufferTooShort) {
    check_comes_back_as_itself(TestType("went wrong: " + std::string(mp::type_name<TestType>())));
    check_comes_back_as_itself(TestType(""));
}

TEST_CASE("exceptions without a message of their own come back as themselves") {
    check_comes_back_as_itself(std::exception());
    check_comes_back_as_itself(std::bad_alloc());
    check_comes_back_as_itself(mp::Empty());
    try {
        mp::detail::rethrow_packed_exception(
            mp::detail::pack_exception(std::make_exception_ptr(std::out_of_range("index 7"))));
    } catch (const std::out_of_range& e) {
        CHECK(std::string(e.what()) == "index 7");
    }
}

TEST_CASE("std::system_error keeps its code, category and message") {
    for (auto* category : {&std::generic_category(), &std::system_category()}) {
        std::system_error original(ENOENT, *category, "open config");
        try {
            mp::detail::rethrow_packed_exception(
                mp::detail::pack_exception(std::make_exception_ptr(original)));
            FAIL("nothing was thrown");
        } catch (const std::system_error& e) {
            CHECK(e.code() == original.code());
            CHECK(std::string(e.what()) == original.what());
        }
    }
    check_comes_back_as_itself(std::system_error(std::make_error_code(std::errc::timed_out)));
    // Another category cannot be rebuilt here: it comes back as RemoteError.
    try {
        mp::detail::rethrow_packed_exception(mp::detail::pack_exception(std::make_exception_ptr(
            std::system_error(std::make_error_code(std::future_errc::no_state)))));
        FAIL("nothing was thrown");
    } catch (const mp::RemoteError& e) {
        CHECK(e.type_name() == "std::system_error");
    }
}

TEST_CASE("other exceptions come back as RemoteError with type name and message") {
    try {
        mp::detail::rethrow_packed_exception(
            mp::detail::pack_exception(std::make_exception_ptr(MyError("custom failure"))));
        FAIL("nothing was thrown");
    } catch (const mp::RemoteError& e) {
        CHECK_THAT(e.type_name(), Catch::Contains("MyError"));
        CHECK(e.message() == "custom failure");
        CHECK_THAT(std::string(e.what()), Catch::Contains("custom failure"));
    }

    try {
        mp::detail::rethrow_packed_exception(
            mp::detail::pack_exception(std::make_exception_ptr(42)));
        FAIL("nothing was thrown");
    } catch (const mp::RemoteError& e) {
        CHECK(e.type_name() == "int");
        CHECK_THAT(e.message(), Catch::Contains("unknown exception"));
    }

    // Forwarded again, a RemoteError keeps the original type and message.
    mp::RemoteError remote("somewhere::Odd", "odd thing");
    try {
        mp::detail::rethrow_packed_exception(
            mp::detail::pack_exception(std::make_exception_ptr(remote)));
        FAIL("nothing was thrown");
    } catch (const mp::RemoteError& e) {
        CHECK(e.type_name() == "somewhere::Odd");
        CHECK(e.message() == "odd thing");
        CHECK(std::string(e.what()) == remote.what());
    }

    CHECK_THROWS_AS(mp::detail::pack_exception(nullptr), mp::ValueError);
    CHECK_THROWS_WITH(mp::detail::rethrow_packed_exception(mp::serialize(std::string("x"))),
                      Catch::Contains("not a packed exception"));
}
