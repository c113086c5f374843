// Printing as Python prints: True/False and None. Only the examples need this; it keeps their
// output comparable, as text, with the Python originals'.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

inline const char* py(bool b) { return b ? "True" : "False"; }

template <class T>
std::string py(const std::optional<T>& v) {
    return v ? fmt::format("{}", *v) : std::string("None");
}

// A list of strings as Python's repr prints it: ['a', 'b'] (fmt quotes with ").
inline std::string py(const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        out += i ? ", '" : "'";
        out += v[i];
        out += '\'';
    }
    return out + "]";
}
