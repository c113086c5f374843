// One timeout convention for every blocking call: a std::chrono duration or a double of
// seconds, turned into an absolute monotonic deadline (-1 = wait forever).
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>

#include "posix/syscall.hpp"

namespace multiprocessing::detail {

inline constexpr std::int64_t forever = -1;

template <class Rep, class Period>
std::int64_t deadline_after(std::chrono::duration<Rep, Period> d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    if (ns < 0) ns = 0;
    return posix::monotonic_ns() + ns;
}

// Python treats a negative timeout as zero; NaN and infinity mean "forever".
inline std::int64_t deadline_after(double seconds) {
    if (std::isnan(seconds) || std::isinf(seconds)) return forever;
    if (seconds < 0) seconds = 0;
    if (seconds > 1e9) return forever;
    return posix::monotonic_ns() + std::int64_t(seconds * 1e9);
}

inline std::int64_t deadline_after(std::optional<double> seconds) {
    return seconds ? deadline_after(*seconds) : forever;
}

inline std::int64_t remaining_ns(std::int64_t deadline) {
    if (deadline == forever) return forever;
    auto left = deadline - posix::monotonic_ns();
    return left > 0 ? left : 0;
}

// Accepted as a timeout argument: a chrono duration or seconds as a number.
template <class T>
concept timeout_like = requires(T t) { detail::deadline_after(t); };

}  // namespace multiprocessing::detail
