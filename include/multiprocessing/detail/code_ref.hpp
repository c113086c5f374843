// A function's address as (module, offset from the module's load address): the name of a task
// function that stays valid in another process running the same binaries, whatever address
// space randomisation did there (spawn), and for functions in shared libraries too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include <dlfcn.h>
#include <link.h>

#include "../errors.hpp"

namespace multiprocessing::detail {

struct code_ref {
    std::string module;  // "" for the main program
    std::uint64_t offset = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(module, offset);
    }
};

namespace code_ref_impl {

struct module_hit {
    std::uintptr_t address;
    std::uintptr_t base = 0;
    const char* name = nullptr;
    bool found = false;
};

// The loaded module whose executable segment holds `address`.
inline int find_by_address(dl_phdr_info* info, size_t, void* data) {
    auto* hit = static_cast<module_hit*>(data);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (hit->address >= lo && hit->address < lo + ph.p_memsz) {
            hit->base = info->dlpi_addr;
            hit->name = info->dlpi_name;
            hit->found = true;
            return 1;
        }
    }
    return 0;
}

// A module's load address and the span of its executable segments.
struct module_range {
    std::uintptr_t base = 0, code_lo = UINTPTR_MAX, code_hi = 0;
};

struct module_lookup {
    const std::string* name;
    module_range range;
    bool first = true;
    bool found = false;
};

// The main program is the first module reported, whatever its name.
inline int find_by_name(dl_phdr_info* info, size_t, void* data) {
    auto* q = static_cast<module_lookup*>(data);
    bool is_main = q->first;
    q->first = false;
    if (q->name->empty() ? is_main : (!is_main && *q->name == info->dlpi_name)) {
        q->range.base = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
            const auto& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
            q->range.code_lo = std::min<std::uintptr_t>(q->range.code_lo, info->dlpi_addr + ph.p_vaddr);
            q->range.code_hi =
                std::max<std::uintptr_t>(q->range.code_hi, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
        }
        q->found = true;
        return 1;
    }
    return 0;
}

struct caches {
    std::mutex mutex;
    std::unordered_map<std::uintptr_t, code_ref> by_address;
    std::unordered_map<std::string, module_range> modules;
};

inline caches& cache() {
    static caches c;
    return c;
}

}  // namespace code_ref_impl

inline code_ref to_code_ref(std::uintptr_t address) {
    auto& c = code_ref_impl::cache();
    std::lock_guard lock(c.mutex);
    if (auto it = c.by_address.find(address); it != c.by_address.end()) return it->second;
    code_ref_impl::module_hit hit{address};
    ::dl_iterate_phdr(&code_ref_impl::find_by_address, &hit);
    if (!hit.found)
        throw ValueError("multiprocessing: a task function is not in any loaded module's code");
    // dl_iterate_phdr reports the main program first, by an empty name or its path.
    code_ref_impl::module_lookup main_q{nullptr, {}};
    std::string empty;
    main_q.name = &empty;
    ::dl_iterate_phdr(&code_ref_impl::find_by_name, &main_q);
    code_ref ref{main_q.found && main_q.range.base == hit.base ? std::string() : std::string(hit.name),
                 std::uint64_t(address - hit.base)};
    return c.by_address.emplace(address, std::move(ref)).first->second;
}

inline std::uintptr_t from_code_ref(const code_ref& ref) {
    auto& c = code_ref_impl::cache();
    std::lock_guard lock(c.mutex);
    auto it = c.modules.find(ref.module);
    if (it == c.modules.end()) {
        code_ref_impl::module_lookup q{&ref.module, {}};
        ::dl_iterate_phdr(&code_ref_impl::find_by_name, &q);
        if (!q.found) {
            // A library the parent had loaded by hand: load it here too.
            if (ref.module.empty() || !::dlopen(ref.module.c_str(), RTLD_NOW))
                throw ValueError("multiprocessing: module '" + ref.module +
                                 "' of a task function is not loaded in this process");
            q.first = true;
            ::dl_iterate_phdr(&code_ref_impl::find_by_name, &q);
        }
        it = c.modules.emplace(ref.module, q.range).first;
    }
    // Only ever call into executable code of that module.
    std::uintptr_t address = it->second.base + std::uintptr_t(ref.offset);
    if (address < it->second.code_lo || address >= it->second.code_hi)
        throw ValueError("multiprocessing: a task function's offset is outside its module's code");
    return address;
}

template <class Fn>
    requires std::is_function_v<Fn>
code_ref to_code_ref(Fn* fn) {
    return to_code_ref(reinterpret_cast<std::uintptr_t>(fn));
}

template <class FnPtr>
    requires std::is_pointer_v<FnPtr> && std::is_function_v<std::remove_pointer_t<FnPtr>>
FnPtr from_code_ref_as(const code_ref& ref) {
    return reinterpret_cast<FnPtr>(from_code_ref(ref));
}

}  // namespace multiprocessing::detail
