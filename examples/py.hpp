// Printing as Python prints: True/False and None. Only the examples need this; it keeps their
// output comparable, as text, with the Python originals'.
#pragma once

#include <optional>
#include <string>

#include <fmt/format.h>

inline const char* py(bool b) { return b ? "True" : "False"; }

template <class T>
std::string py(const std::optional<T>& v) {
    return v ? fmt::format("{}", *v) : std::string("None");
}
