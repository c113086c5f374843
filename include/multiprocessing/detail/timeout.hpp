// One deadline type for every blocking call (Abseil's KernelTimeout): made from a timeout the
// user gave (a std::chrono duration or a double of seconds, as Python takes), "forever" or "poll
// once", and converted to what each wait needs (the remaining nanoseconds, poll()'s
// milliseconds, the futex's absolute monotonic time). It is an absolute point on the monotonic
// clock, so a wait that is retried (EINTR, a spurious wake-up) keeps its deadline.
#pragma once

#include <chrono>
#include <climits>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <type_traits>

namespace multiprocessing::detail {

// Nanoseconds on the monotonic clock (CLOCK_MONOTONIC, which steady_clock is on Linux; the
// futex takes its deadlines on that clock).
inline std::int64_t monotonic_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class deadline {
public:
    // Forever, unless made otherwise.
    constexpr deadline() noexcept = default;

    static constexpr deadline never() noexcept { return deadline(); }
    // Already passed: a wait checks once and returns (Python's block=False).
    static constexpr deadline poll_once() noexcept { return deadline(0); }
    // At `ns` on the monotonic clock (negative: forever).
    static constexpr deadline at_ns(std::int64_t ns) noexcept { return deadline(ns < 0 ? -1 : ns); }

    template <class Rep, class Period>
    static deadline after(std::chrono::duration<Rep, Period> d) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
        if (ns < 0) ns = 0;
        auto now = monotonic_now_ns();
        return deadline(ns > INT64_MAX - now ? -1 : now + std::int64_t(ns));
    }
    // Python treats a negative timeout as zero; NaN and infinity mean "forever".
    static deadline after(double seconds) {
        if (std::isnan(seconds) || std::isinf(seconds) || seconds > 1e9) return never();
        if (seconds < 0) seconds = 0;
        return deadline(monotonic_now_ns() + std::int64_t(seconds * 1e9));
    }
    static deadline after(std::optional<double> seconds) {
        return seconds ? after(*seconds) : never();
    }

    constexpr bool is_forever() const noexcept { return ns_ < 0; }
    // The point on the monotonic clock; -1 for forever.
    constexpr std::int64_t monotonic_ns() const noexcept { return ns_; }
    // What is left: -1 for forever, else >= 0.
    std::int64_t remaining_ns() const noexcept {
        if (ns_ < 0) return -1;
        auto left = ns_ - monotonic_now_ns();
        return left > 0 ? left : 0;
    }
    bool expired() const noexcept { return ns_ >= 0 && monotonic_now_ns() >= ns_; }
    // For poll() and its kin: -1 for forever, else the remaining milliseconds rounded up (so
    // that a wait never returns just before its deadline and spins), at most INT_MAX.
    int poll_ms() const noexcept {
        auto left = remaining_ns();
        if (left < 0) return -1;
        auto ms = (left + 999'999) / 1'000'000;
        return ms > INT_MAX ? INT_MAX : int(ms);
    }
    // The earlier of two deadlines.
    friend constexpr deadline earlier(deadline a, deadline b) noexcept {
        if (a.is_forever()) return b;
        if (b.is_forever()) return a;
        return a.ns_ < b.ns_ ? a : b;
    }
    // The later of two deadlines.
    friend constexpr deadline later(deadline a, deadline b) noexcept {
        if (a.is_forever() || b.is_forever()) return never();
        return a.ns_ < b.ns_ ? b : a;
    }
    friend constexpr bool operator==(deadline, deadline) noexcept = default;

private:
    constexpr explicit deadline(std::int64_t ns) noexcept : ns_(ns) {}
    std::int64_t ns_ = -1;
};

inline constexpr deadline forever{};

// The deadline of a timeout argument.
template <class Rep, class Period>
deadline deadline_after(std::chrono::duration<Rep, Period> d) {
    return deadline::after(d);
}
inline deadline deadline_after(double seconds) { return deadline::after(seconds); }
inline deadline deadline_after(std::optional<double> seconds) { return deadline::after(seconds); }

// A time_point as a deadline (libstdc++'s steady_clock is CLOCK_MONOTONIC; another clock's
// point is taken as the time left until it).
template <class Clock, class Duration>
deadline deadline_at(std::chrono::time_point<Clock, Duration> tp) {
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
        return ns > 0 ? deadline::at_ns(std::int64_t(ns)) : deadline::poll_once();
    } else {
        return deadline_after(tp - Clock::now());
    }
}

inline std::int64_t remaining_ns(deadline d) noexcept { return d.remaining_ns(); }

// Accepted as a timeout argument: a chrono duration or seconds as a number.
template <class T>
concept timeout_like = requires(T t) { detail::deadline_after(t); };

}  // namespace multiprocessing::detail
