// mp::progress: a bar with count, rate and ETA when drawing; silent when not on a terminal.
#include <multiprocessing.hpp>

#include <cstdio>
#include <ranges>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace mp = multiprocessing;

namespace {
int square(int x) { return x * x; }

std::string read_all(std::FILE* f) {
    std::rewind(f);
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    return s;
}
}  // namespace

TEST_CASE("progress over imap draws a bar that reaches 100%") {
    mp::Pool pool(2);
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    long sum = 0;
    for (int v : mp::progress(pool.imap(square, std::views::iota(0, 50)),
                              {.desc = "squares", .out = out, .force = true}))
        sum += v;
    CHECK(sum == 40425);
    std::string drawn = read_all(out);
    CHECK_THAT(drawn, Catch::Contains("squares: "));
    CHECK_THAT(drawn, Catch::Contains("100% [##############################] 50/50"));
    CHECK_THAT(drawn, Catch::Contains("it/s"));
    CHECK(drawn.back() == '\n');
    std::fclose(out);
}

TEST_CASE("progress stays quiet when its output is not a terminal") {
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    std::vector<int> items{1, 2, 3};
    int n = 0;
    for (int v : mp::progress(items, {.out = out})) n += v;
    CHECK(n == 6);
    CHECK(read_all(out).empty());
    std::fclose(out);
}

TEST_CASE("progress without a known total counts and shows the rate") {
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    auto odd = std::views::iota(0, 10) | std::views::filter([](int x) { return x % 2; });
    int n = 0;
    for (int v : mp::progress(odd, {.out = out, .force = true})) n += v;
    CHECK(n == 25);
    CHECK_THAT(read_all(out), Catch::Contains("\r5 ["));
    std::fclose(out);
}
