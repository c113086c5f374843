// Readable C++ type names, for error reports that cross a process boundary.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

#include <cxxabi.h>

namespace multiprocessing::detail {

inline std::string demangle(const char* mangled) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                             &std::free);
    return status == 0 && s ? std::string(s.get()) : std::string(mangled);
}

inline std::string demangle(const std::type_info& t) { return demangle(t.name()); }

// The class name without its namespaces, as Python's type(x).__name__.
inline std::string short_type_name(const std::type_info& t) {
    std::string full = demangle(t);
    auto cut = full.rfind("::", full.find('<'));
    return cut == std::string::npos ? full : full.substr(cut + 2);
}

}  // namespace multiprocessing::detail
