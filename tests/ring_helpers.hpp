// Put and get of raw bytes on the ring under the queues (test_queues, test_ring_faults).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <multiprocessing/detail/shared_ring.hpp>

namespace test {

inline bool ring_put(multiprocessing::detail::shared_ring& r, const std::string& s,
                     multiprocessing::detail::deadline deadline = multiprocessing::detail::forever) {
    return r.put(
        s.size(),
        [&](const multiprocessing::detail::ring_span& sp) { sp.write(0, s.data(), s.size()); },
        deadline);
}

inline std::optional<std::string> ring_get(multiprocessing::detail::shared_ring& r,
                                           multiprocessing::detail::deadline deadline = multiprocessing::detail::forever) {
    std::string out;
    bool got = r.get(
        [&](const multiprocessing::detail::ring_span& sp) {
            out.resize(sp.size());
            sp.read(0, out.data(), out.size());
        },
        deadline);
    if (!got) return std::nullopt;
    return out;
}

// n bytes that differ with `seed` and along the string.
inline std::string pattern(std::size_t n, char seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = char(seed + i * 7);
    return s;
}

}  // namespace test
