// The stand-in for pickle: what may cross a process boundary, and its compact binary encoding.
//
// A type is `mp::serializable` when it is one of: an arithmetic type, an enum (std::byte
// included), std::basic_string, vector, deque, list, (multi)set, (multi)map and their unordered
// forms, std::array, pair, tuple, optional, variant, std::monostate, std::complex, a chrono
// duration or time_point, an aggregate whose fields are all serializable (through Boost.PFR), or a
// type with a serialize hook. One hook serves both directions:
//
//     struct Account {                                  // member form
//         template <class Archive> void serialize(Archive& ar) { ar(owner_, balance_); }
//       private:
//         std::string owner_;
//         double balance_ = 0;
//     };
//     template <class Archive>                          // free form, found by ADL
//     void serialize(Archive& ar, Legacy& x) { ar(x.a, x.b); }
//
// The archive writes when Archive::is_loading is false and reads otherwise; hook types must be
// default-constructible (decoding builds one and lets the hook fill it). A hook also makes a
// self-referential type (a tree) serializable, which the field-by-field aggregate route cannot.
//
// The encoding is for one machine: host byte order, host sizes; lengths and variant indices are
// LEB128 varints. Decoding trusts nothing: every read is bounds-checked, lengths are checked
// against the bytes left before anything is allocated, and each failure throws
// mp::SerializationError.
#pragma once

#include <array>
#include <chrono>
#include <complex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>


#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>

#include "detail/demangle.hpp"
#include "errors.hpp"

namespace multiprocessing {

namespace detail {

template <class T>
constexpr std::string_view raw_type_name() {
    return __PRETTY_FUNCTION__;  // gcc: "... [with T = X; ...]", clang: "... [T = X]"
}

// Spellings that differ between standard libraries and say nothing to a reader.
struct type_name_rewrite {
    std::string_view from, to;
};
inline constexpr type_name_rewrite type_name_rewrites[] = {
    {"std::__cxx11::", "std::"},
    {"std::__1::", "std::"},
    {"std::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string"},
    {"std::basic_string<char>", "std::string"},
};

// One left-to-right pass replacing r.from by r.to in buf[0, n), in place (r.to is not longer);
// returns the new length.
constexpr std::size_t rewrite_type_name(char* buf, std::size_t n, type_name_rewrite r) {
    std::size_t out = 0;
    for (std::size_t in = 0; in < n;) {
        if (std::string_view(buf + in, n - in).starts_with(r.from)) {
            for (char c : r.to) buf[out++] = c;
            in += r.from.size();
        } else {
            buf[out++] = buf[in++];
        }
    }
    return out;
}

template <class T>
constexpr std::string_view plain_type_name() {
    constexpr std::string_view f = raw_type_name<T>();
    constexpr std::size_t begin = f.find("T = ") + 4;
    constexpr std::size_t semicolon = f.find(';', begin);
    constexpr std::size_t end = semicolon != f.npos ? semicolon : f.rfind(']');
    return f.substr(begin, end - begin);
}

template <class T>
consteval auto tidy_type_name() {
    constexpr std::string_view name = plain_type_name<T>();
    std::array<char, name.size()> buf{};
    name.copy(buf.data(), name.size());
    std::size_t n = name.size();
    for (const auto& r : type_name_rewrites) n = rewrite_type_name(buf.data(), n, r);
    return std::pair{buf, n};
}

// A variable template, so every use of type_name<T>() shares one null-terminated buffer.
template <class T>
inline constexpr auto type_name_storage = [] {
    constexpr auto tidy = tidy_type_name<T>();
    std::array<char, tidy.second + 1> buf{};
    for (std::size_t i = 0; i < tidy.second; ++i) buf[i] = tidy.first[i];
    return buf;
}();

}  // namespace detail

// The compiler's name for T, tidied ("std::string", not "std::__cxx11::basic_string<char>"):
// stable within one binary, which is all a parent and its children need.
template <class T>
constexpr std::string_view type_name() {
    return {detail::type_name_storage<T>.data(), detail::type_name_storage<T>.size() - 1};
}

namespace detail {

class writer;
class reader;

template <class T, template <class...> class Template>
inline constexpr bool is_instance_of = false;
template <template <class...> class Template, class... Args>
inline constexpr bool is_instance_of<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_span = false;
template <class T, std::size_t N>
inline constexpr bool is_span<std::span<T, N>> = true;

namespace hook {
void serialize() = delete;  // hides mp::serialize, so only a user's hook found by ADL is called
template <class T, class Archive>
concept adl = requires(Archive& ar, T& v) { serialize(ar, v); };
template <class Archive, class T>
void call(Archive& ar, T& v) {
    serialize(ar, v);
}
}  // namespace hook

template <class T>
concept member_hook = requires(T& v, writer& w, reader& r) {
    v.serialize(w);
    v.serialize(r);
};
template <class T>
concept has_hook = member_hook<T> || (hook::adl<T, writer> && hook::adl<T, reader>);

// How a type is encoded; the last group names why a type is rejected.
enum class kind {
    hook, boolean, scalar, string, sequence, set, map, array, tuple, optional, variant,
    complex, duration, time_point, empty, aggregate,
    reference, qualified, pointer, c_array, view, union_type, unassignable_aggregate, other
};

template <class T>
consteval kind kind_of() {
    if constexpr (std::is_reference_v<T>) return kind::reference;
    else if constexpr (!std::is_same_v<T, std::remove_cv_t<T>>) return kind::qualified;
    else if constexpr (has_hook<T>) return kind::hook;
    else if constexpr (std::is_same_v<T, bool>) return kind::boolean;
    else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) return kind::scalar;
    else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                       std::is_null_pointer_v<T>)
        return kind::pointer;
    else if constexpr (std::is_array_v<T>) return kind::c_array;
    else if constexpr (is_instance_of<T, std::basic_string_view> || is_span<T>) return kind::view;
    else if constexpr (is_instance_of<T, std::basic_string>) {
        return std::is_arithmetic_v<typename T::value_type> ? kind::string : kind::other;
    } else if constexpr (is_instance_of<T, std::vector> || is_instance_of<T, std::deque> ||
                         is_instance_of<T, std::list>)
        return kind::sequence;
    else if constexpr (is_instance_of<T, std::set> || is_instance_of<T, std::multiset> ||
                       is_instance_of<T, std::unordered_set> ||
                       is_instance_of<T, std::unordered_multiset>)
        return kind::set;
    else if constexpr (is_instance_of<T, std::map> || is_instance_of<T, std::multimap> ||
                       is_instance_of<T, std::unordered_map> ||
                       is_instance_of<T, std::unordered_multimap>)
        return kind::map;
    else if constexpr (is_std_array<T>) return kind::array;
    else if constexpr (is_instance_of<T, std::pair> || is_instance_of<T, std::tuple>)
        return kind::tuple;
    else if constexpr (is_instance_of<T, std::optional>) return kind::optional;
    else if constexpr (is_instance_of<T, std::variant>) return kind::variant;
    else if constexpr (is_instance_of<T, std::complex>) return kind::complex;
    else if constexpr (is_instance_of<T, std::chrono::duration>) return kind::duration;
    else if constexpr (is_instance_of<T, std::chrono::time_point>) return kind::time_point;
    else if constexpr (std::is_same_v<T, std::monostate>) return kind::empty;
    else if constexpr (std::is_union_v<T>) return kind::union_type;
    else if constexpr (std::is_aggregate_v<T>) {
        // Reference and const members make an aggregate unassignable; both defeat decoding.
        return std::default_initializable<T> && std::is_move_assignable_v<T>
                   ? kind::aggregate
                   : kind::unassignable_aggregate;
    } else
        return kind::other;
}

template <class... Ts>
struct type_list {};

// How many times parts<T>() repeats in T's layout.
template <class T>
consteval std::size_t repeat_count() {
    if constexpr (is_std_array<T>) return std::tuple_size_v<T>;
    else if constexpr (is_instance_of<T, std::complex>) return 2;
    else return 1;
}

// The types a composite is made of.
template <class T>
consteval auto parts() {
    constexpr kind k = kind_of<T>();
    if constexpr (k == kind::aggregate) {
        return []<std::size_t... I>(std::index_sequence<I...>) {
            return type_list<boost::pfr::tuple_element_t<I, T>...>{};
        }(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
    } else if constexpr (k == kind::tuple) {
        return []<std::size_t... I>(std::index_sequence<I...>) {
            return type_list<std::tuple_element_t<I, T>...>{};
        }(std::make_index_sequence<std::tuple_size_v<T>>{});
    } else if constexpr (k == kind::variant) {
        return []<std::size_t... I>(std::index_sequence<I...>) {
            return type_list<std::variant_alternative_t<I, T>...>{};
        }(std::make_index_sequence<std::variant_size_v<T>>{});
    } else if constexpr (k == kind::map) {
        return type_list<typename T::key_type, typename T::mapped_type>{};
    } else if constexpr (k == kind::sequence || k == kind::set || k == kind::array ||
                         k == kind::optional || k == kind::complex) {
        return type_list<typename T::value_type>{};
    } else if constexpr (k == kind::duration) {
        return type_list<typename T::rep>{};
    } else if constexpr (k == kind::time_point) {
        return type_list<typename T::duration>{};
    } else {
        return type_list<>{};
    }
}

// A container's element as decoded: a map's key is not const yet.
template <class T>
struct decoded_element {
    using type = typename T::value_type;
};
template <class T>
    requires requires { typename T::mapped_type; }
struct decoded_element<T> {
    using type = std::pair<typename T::key_type, typename T::mapped_type>;
};

#define MP_DETAIL_REJECT(reason)                                                             \
    static_assert(!Explain, "mp::serializable: T cannot cross a process boundary: " reason); \
    return false

// Whether T is serializable. With Explain, a rejected type fails a static_assert that says why,
// and the compiler's "required from" notes lead from the type asked for to the culprit.
template <class T, bool Explain = false>
consteval bool check() {
    constexpr kind k = kind_of<T>();
    if constexpr (k == kind::hook) {
        if constexpr (!std::default_initializable<T>) {
            MP_DETAIL_REJECT("a type with a serialize hook must be default-constructible");
        } else {
            return true;
        }
    } else if constexpr (k == kind::reference) {
        MP_DETAIL_REJECT("a reference; send the value it refers to");
    } else if constexpr (k == kind::qualified) {
        MP_DETAIL_REJECT("a const or volatile type cannot be decoded into; drop the qualifier");
    } else if constexpr (k == kind::pointer) {
        MP_DETAIL_REJECT("a pointer is an address in this process only; send the value");
    } else if constexpr (k == kind::c_array) {
        MP_DETAIL_REJECT("a C array; use std::array or std::vector");
    } else if constexpr (k == kind::view) {
        MP_DETAIL_REJECT("a view does not own its data; send a std::string or std::vector");
    } else if constexpr (k == kind::union_type) {
        MP_DETAIL_REJECT("a union does not know its active member; use std::variant");
    } else if constexpr (k == kind::unassignable_aggregate) {
        MP_DETAIL_REJECT("an aggregate with a reference or const member cannot be decoded into");
    } else if constexpr (k == kind::other) {
        MP_DETAIL_REJECT(
            "it is neither a supported standard type nor an aggregate, and has no serialize "
            "hook (a member `template <class Archive> void serialize(Archive& ar) { ar(fields...); "
            "}` or a free `serialize(Archive&, T&)` found by ADL). Closures with captures and "
            "std::function can never be sent");
    } else {
        return []<class... Parts>(type_list<Parts...>) {
            return (check<Parts, Explain>() && ...);
        }(parts<T>());
    }
}

#undef MP_DETAIL_REJECT

// Entry points assert rather than constrain, so that misuse reads "cannot cross a process
// boundary" and why, instead of "no matching function".
template <class T>
consteval void require_serializable() {
    static_assert(check<T, true>(),
                  "mp::serializable: T cannot cross a process boundary (the notes name T)");
}

}  // namespace detail

// Python: what pickle accepts. See the top of this file for the list and the hook.
template <class T>
concept serializable = detail::check<T>();

namespace detail {

// Encoded as one memcpy of the object: scalars, and composites of them that are trivially
// copyable and have no padding, so that no uninitialised byte leaves the process.
template <class T>
consteval bool bulk() {
    constexpr kind k = kind_of<T>();
    if constexpr (k == kind::scalar) {
        return true;
    } else if constexpr (!std::is_trivially_copyable_v<T> ||
                         !(k == kind::aggregate || k == kind::array || k == kind::complex ||
                           k == kind::duration || k == kind::time_point)) {
        return false;
    } else {
        return []<class... Parts>(type_list<Parts...>) {
            return (bulk<Parts>() && ...) &&
                   sizeof(T) == repeat_count<T>() * (sizeof(Parts) + ... + 0);
        }(parts<T>());
    }
}

// A lower bound on the encoded size, to reject a length prefix the input cannot back.
template <class T>
consteval std::size_t min_size() {
    constexpr kind k = kind_of<T>();
    if constexpr (bulk<T>()) {
        return sizeof(T);
    } else if constexpr (k == kind::hook || k == kind::empty) {
        return 0;  // a hook may write nothing
    } else if constexpr (k == kind::boolean || k == kind::string || k == kind::sequence ||
                         k == kind::set || k == kind::map || k == kind::optional ||
                         k == kind::variant) {
        return 1;  // a flag, a length or an index
    } else {
        return repeat_count<T>() * []<class... Parts>(type_list<Parts...>) {
            return (min_size<Parts>() + ... + 0);
        }(parts<T>());
    }
}

// A string, or a vector of bulk elements: one memcpy for the lot.
template <class T>
consteval bool contiguous_bulk() {
    if constexpr (kind_of<T>() == kind::string || is_instance_of<T, std::vector>)
        return bulk<typename T::value_type>();
    else
        return false;
}

// Python: pickle.Pickler. Appends encodings to a byte vector, so that a caller can put a header
// and a payload in one buffer; also the archive handed to write-side serialize hooks.
class writer {
public:
    static constexpr bool is_loading = false;

    explicit writer(std::vector<std::byte>& out) noexcept : out_(&out) {}

    template <class T>
    void write(const T& v) {
        require_serializable<T>();
        if constexpr (serializable<T>) encode(v);
    }

    // The hook's `ar(a, b, c)`.
    template <class... Ts>
    void operator()(const Ts&... vs) {
        (write(vs), ...);
    }

    void write_size(std::uint64_t n) {
        do {
            auto b = static_cast<std::uint8_t>(n & 0x7f);
            n >>= 7;
            out_->push_back(std::byte(n ? b | 0x80 : b));
        } while (n);
    }

    void write_bytes(const void* data, std::size_t size) {
        const auto* p = static_cast<const std::byte*>(data);
        out_->insert(out_->end(), p, p + size);
    }

    std::vector<std::byte>& buffer() noexcept { return *out_; }

private:
    template <class T>
    void encode(const T& v) {
        constexpr kind k = kind_of<T>();
        if constexpr (k == kind::hook) {
            // The hook is one non-const function for both directions; writing only reads it.
            auto& mutable_v = const_cast<T&>(v);
            if constexpr (member_hook<T>) mutable_v.serialize(*this);
            else hook::call(*this, mutable_v);
        } else if constexpr (bulk<T>()) {
            write_bytes(&v, sizeof(T));
        } else if constexpr (k == kind::boolean) {
            out_->push_back(std::byte(v ? 1 : 0));
        } else if constexpr (contiguous_bulk<T>()) {
            write_size(v.size());
            write_bytes(v.data(), v.size() * sizeof(typename T::value_type));
        } else if constexpr (k == kind::map) {
            write_size(v.size());
            for (const auto& [key, value] : v) {
                encode(key);
                encode(value);
            }
        } else if constexpr (k == kind::string || k == kind::sequence || k == kind::set) {
            write_size(v.size());
            for (const auto& e : v) encode(static_cast<const typename T::value_type&>(e));
        } else if constexpr (k == kind::array) {
            for (const auto& e : v) encode(e);
        } else if constexpr (k == kind::tuple) {
            std::apply([&](const auto&... es) { (encode(es), ...); }, v);
        } else if constexpr (k == kind::optional) {
            encode(v.has_value());
            if (v) encode(*v);
        } else if constexpr (k == kind::variant) {
            if (v.valueless_by_exception())
                throw SerializationError(std::string("mp::serialize: a valueless ") +
                                         std::string(type_name<T>()) + " cannot be sent");
            write_size(v.index());
            std::visit([&](const auto& alt) { encode(alt); }, v);
        } else if constexpr (k == kind::complex) {
            encode(v.real());
            encode(v.imag());
        } else if constexpr (k == kind::duration) {
            encode(v.count());
        } else if constexpr (k == kind::time_point) {
            encode(v.time_since_epoch());
        } else if constexpr (k == kind::aggregate) {
            boost::pfr::for_each_field(v, [&](const auto& field) { encode(field); });
        }  // else kind::empty: nothing to write
    }

    std::vector<std::byte>* out_;
};

// Python: pickle.Unpickler. A bounds-checked cursor over encoded bytes, for several values in one
// buffer; also the archive handed to read-side serialize hooks.
// True while this thread decodes a value: a handle whose default constructor makes or demands
// something (SharedMemory) is then the empty object its value is decoded into.
inline int& decoding_depth() noexcept {
    static thread_local int depth = 0;
    return depth;
}
inline bool decoding() noexcept { return decoding_depth() > 0; }
// Marks a scope as decoding: also where objects are default-constructed to be decoded into
// later (a result vector sized in advance).
struct decoding_scope {
    decoding_scope() noexcept { ++decoding_depth(); }
    ~decoding_scope() { --decoding_depth(); }
    decoding_scope(const decoding_scope&) = delete;
    decoding_scope& operator=(const decoding_scope&) = delete;
};

class reader {
public:
    static constexpr bool is_loading = true;

    explicit reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

    template <class T>
    T read() {
        require_serializable<T>();
        if constexpr (serializable<T>) {
            decoding_scope scope;
            T v{};
            decode(v);
            return v;
        } else {
            throw;  // unreachable: the static_assert above has failed
        }
    }

    // Decodes into an existing object, replacing its value.
    template <class T>
    void read_into(T& v) {
        require_serializable<T>();
        if constexpr (serializable<T>) {
            decoding_scope scope;
            decode(v);
        }
    }

    // The hook's `ar(a, b, c)`.
    template <class... Ts>
    void operator()(Ts&... vs) {
        (read_into(vs), ...);
    }

    // A LEB128 length, as written by writer::write_size.
    std::uint64_t read_size() {
        std::uint64_t n = 0;
        for (int shift = 0;; shift += 7) {
            auto b = std::to_integer<std::uint8_t>(take(1, "a length")[0]);
            if (shift == 63 && b > 1) fail("a length overflows 64 bits");
            n |= std::uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return n;
        }
    }

    // The next `size` bytes, consumed; `what` names them in the error when they are missing.
    std::span<const std::byte> take(std::size_t size, std::string_view what) {
        if (size > remaining())
            fail("truncated input: " + std::string(what) + " needs " + std::to_string(size) +
                 " bytes but only " + std::to_string(remaining()) + " remain");
        auto s = bytes_.subspan(offset_, size);
        offset_ += size;
        return s;
    }

    std::size_t offset() const noexcept { return offset_; }
    std::size_t remaining() const noexcept { return bytes_.size() - offset_; }

    // Trailing bytes mean the sender wrote something else than what is being read.
    void expect_end() const {
        if (remaining() != 0)
            fail(std::to_string(remaining()) + " unexpected trailing bytes after the value");
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw SerializationError("mp::deserialize: " + what + " (at byte " +
                                 std::to_string(offset_) + " of " +
                                 std::to_string(bytes_.size()) + ")");
    }

private:
    // Elements that encode to nothing cost no input, so their number is capped separately.
    static constexpr std::size_t max_empty_elements = std::size_t(1) << 20;
    // Only hooks nest as deep as the data says (a tree); bound it before the stack is.
    static constexpr std::size_t max_hook_depth = 1000;

    // A length prefix, checked against the bytes left before anything is sized by it: every
    // element takes at least min_size<T>() bytes, so a corrupt length cannot make us allocate.
    template <class T>
    std::size_t read_count() {
        std::uint64_t n = read_size();
        constexpr std::size_t min = min_size<T>();
        std::uint64_t limit = min ? remaining() / min : remaining() + empty_budget_;
        if (n > limit)
            fail("a length of " + std::to_string(n) + " elements of " +
                 std::string(type_name<T>()) + " exceeds what the " +
                 std::to_string(remaining()) + " remaining bytes can hold");
        return static_cast<std::size_t>(n);
    }

    template <class T>
    void decode_element(T& v) {
        std::size_t before = offset_;
        decode(v);
        if (offset_ == before && empty_budget_-- == 0)
            fail("too many elements that encode to nothing");
    }

    template <class T>
    void decode(T& v) {
        constexpr kind k = kind_of<T>();
        if constexpr (k == kind::hook) {
            if (depth_ == max_hook_depth)
                fail("values nest deeper than " + std::to_string(max_hook_depth) + " levels");
            ++depth_;
            if constexpr (member_hook<T>) v.serialize(*this);
            else hook::call(*this, v);
            --depth_;
        } else if constexpr (bulk<T>()) {
            std::memcpy(&v, take(sizeof(T), type_name<T>()).data(), sizeof(T));
        } else if constexpr (k == kind::boolean) {
            auto b = std::to_integer<std::uint8_t>(take(1, "a bool")[0]);
            if (b > 1) fail("a bool is encoded as " + std::to_string(b) + ", not 0 or 1");
            v = b == 1;
        } else if constexpr (contiguous_bulk<T>()) {
            using E = typename T::value_type;
            std::size_t n = read_count<E>();
            v.resize(n);
            if (n) std::memcpy(v.data(), take(n * sizeof(E), type_name<T>()).data(), n * sizeof(E));
        } else if constexpr (k == kind::sequence || k == kind::string) {
            using E = typename T::value_type;
            std::size_t n = read_count<E>();
            v.clear();
            if constexpr (requires { v.reserve(n); }) {
                if (min_size<E>() > 0) v.reserve(n);
            }
            for (std::size_t i = 0; i < n; ++i) {
                if constexpr (std::is_same_v<E, bool>) {  // vector<bool> has no bool& to fill
                    v.push_back(read<bool>());
                } else {
                    decode_element(v.emplace_back());
                }
            }
        } else if constexpr (k == kind::set || k == kind::map) {
            using E = typename decoded_element<T>::type;
            std::size_t n = read_count<E>();
            v.clear();
            if constexpr (requires { v.reserve(n); }) {
                if (min_size<E>() > 0) v.reserve(n);
            }
            for (std::size_t i = 0; i < n; ++i) {
                E e{};
                decode_element(e);
                std::size_t size = v.size();
                v.insert(v.end(), std::move(e));
                if (v.size() == size) fail("a duplicate key in a " + std::string(type_name<T>()));
            }
        } else if constexpr (k == kind::array) {
            for (auto& e : v) decode(e);
        } else if constexpr (k == kind::tuple) {
            std::apply([&](auto&... es) { (decode(es), ...); }, v);
        } else if constexpr (k == kind::optional) {
            if (read<bool>()) decode(v.emplace());
            else v.reset();
        } else if constexpr (k == kind::variant) {
            std::uint64_t index = read_size();
            if (index >= std::variant_size_v<T>)
                fail("variant index " + std::to_string(index) + " is out of range for " +
                     std::string(type_name<T>()));
            // emplace<I> needs a constant: expand over all I and decode into the one that matches.
            [&]<std::size_t... I>(std::index_sequence<I...>) {
                (void)((index == I && (decode(v.template emplace<I>()), true)) || ...);
            }(std::make_index_sequence<std::variant_size_v<T>>{});
        } else if constexpr (k == kind::complex) {
            typename T::value_type re{}, im{};
            decode(re);
            decode(im);
            v = T(re, im);
        } else if constexpr (k == kind::duration) {
            typename T::rep count{};
            decode(count);
            v = T(count);
        } else if constexpr (k == kind::time_point) {
            typename T::duration d{};
            decode(d);
            v = T(d);
        } else if constexpr (k == kind::aggregate) {
            boost::pfr::for_each_field(v, [&](auto& field) { decode(field); });
        } else if constexpr (k == kind::empty) {
            v = T{};
        }
    }

    std::span<const std::byte> bytes_;
    std::size_t offset_ = 0;
    std::size_t empty_budget_ = max_empty_elements;
    std::size_t depth_ = 0;
};

}  // namespace detail

// Python: pickle.dumps(obj), appending to `out`. On an exception `out` is left as it was.
template <class T>
void serialize_into(std::vector<std::byte>& out, const T& v) {
    detail::require_serializable<T>();
    if constexpr (serializable<T>) {
        std::size_t size = out.size();
        try {
            detail::writer(out).write(v);
        } catch (...) {
            out.resize(size);
            throw;
        }
    }
}

// Python: pickle.dumps(obj)
template <class T>
std::vector<std::byte> serialize(const T& v) {
    std::vector<std::byte> out;
    serialize_into(out, v);
    return out;
}

// Python: pickle.loads(data); exactly one T, trailing bytes are an error.
template <class T>
T deserialize(std::span<const std::byte> bytes) {
    detail::reader r(bytes);
    T v = r.read<T>();
    r.expect_end();
    return v;
}

namespace detail {

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

inline constexpr std::byte message_magic{0x6d};    // 'm'
inline constexpr std::byte exception_magic{0x65};  // 'e'

// A message names its type, so that a receiver expecting another type says so instead of
// decoding garbage: magic, fnv1a(type_name<T>()), type_name<T>(), value.
template <class T>
void pack_message_into(std::vector<std::byte>& out, const T& v) {
    require_serializable<T>();
    if constexpr (serializable<T>) {
        constexpr std::string_view name = type_name<T>();
        constexpr std::uint64_t hash = fnv1a(name);
        std::size_t size = out.size();
        writer w(out);
        out.push_back(message_magic);
        w.write_bytes(&hash, sizeof hash);
        w.write_size(name.size());
        w.write_bytes(name.data(), name.size());
        try {
            w.write(v);
        } catch (...) {
            out.resize(size);
            throw;
        }
    }
}

// Python: what Connection.send(obj) pickles.
template <class T>
std::vector<std::byte> pack_message(const T& v) {
    std::vector<std::byte> out;
    pack_message_into(out, v);
    return out;
}

// Python: what Connection.recv() unpickles, but typed: a message of another type is an error
// naming both. The hash is checked too, so that a corrupt name cannot pass for the right one.
template <class T>
T unpack_message(std::span<const std::byte> bytes) {
    reader r(bytes);
    if (r.take(1, "the message header")[0] != message_magic)
        r.fail("not a message (bad magic byte)");
    std::uint64_t hash;
    std::memcpy(&hash, r.take(sizeof hash, "the message header").data(), sizeof hash);
    auto sent = r.take(r.read_size(), "the message's type name");
    std::string_view sent_name(reinterpret_cast<const char*>(sent.data()), sent.size());
    constexpr std::string_view expected = type_name<T>();
    if (hash != fnv1a(expected) || sent_name != expected)
        throw SerializationError("mp::unpack_message: received a message of type " +
                                 std::string(sent_name) + " but expected " +
                                 std::string(expected));
    T v = r.read<T>();
    r.expect_end();
    return v;
}


// An exception as it crosses: dynamic type name, what(), and a std::system_error's code.
struct packed_exception {
    enum class category : std::uint8_t { none, generic, system };
    std::string type;
    std::string message;
    category code_category = category::none;
    int code = 0;
};

// Rebuilds E from what crossed; a value E cannot carry turns it into RemoteError rather than
// losing information.
template <class E>
[[noreturn]] void rethrow_as(const packed_exception& p) {
    if constexpr (std::is_same_v<E, std::system_error>) {
        using cat = packed_exception::category;
        if (p.code_category == cat::none) throw RemoteError(p.type, p.message);
        std::error_code ec(p.code, p.code_category == cat::generic ? std::generic_category()
                                                                   : std::system_category());
        // system_error's what() is "prefix: " + ec.message(); rebuild the prefix so it matches.
        std::string suffix = ec.message();
        if (p.message == suffix) throw std::system_error(ec);
        if (p.message.ends_with(": " + suffix))
            throw std::system_error(ec, p.message.substr(0, p.message.size() - suffix.size() - 2));
        throw std::system_error(ec, p.message);
    } else if constexpr (std::is_constructible_v<E, std::string>) {
        throw E(p.message);
    } else {
        // std::exception and std::bad_alloc carry a fixed what() of their own.
        if (p.message != E().what()) throw RemoteError(p.type, p.message);
        throw E();
    }
}

struct exception_entry {
    const std::type_info* type;
    void (*rethrow)(const packed_exception&);
};

// The types rebuilt as themselves; any other comes back as RemoteError.
inline constexpr exception_entry exception_registry[] = {
    {&typeid(std::exception), rethrow_as<std::exception>},
    {&typeid(std::bad_alloc), rethrow_as<std::bad_alloc>},
    {&typeid(std::logic_error), rethrow_as<std::logic_error>},
    {&typeid(std::domain_error), rethrow_as<std::domain_error>},
    {&typeid(std::invalid_argument), rethrow_as<std::invalid_argument>},
    {&typeid(std::length_error), rethrow_as<std::length_error>},
    {&typeid(std::out_of_range), rethrow_as<std::out_of_range>},
    {&typeid(std::runtime_error), rethrow_as<std::runtime_error>},
    {&typeid(std::range_error), rethrow_as<std::range_error>},
    {&typeid(std::overflow_error), rethrow_as<std::overflow_error>},
    {&typeid(std::underflow_error), rethrow_as<std::underflow_error>},
    {&typeid(std::system_error), rethrow_as<std::system_error>},
    {&typeid(ProcessError), rethrow_as<ProcessError>},
    {&typeid(BufferTooShort), rethrow_as<BufferTooShort>},
    {&typeid(AuthenticationError), rethrow_as<AuthenticationError>},
    {&typeid(TimeoutError), rethrow_as<TimeoutError>},
    {&typeid(Empty), rethrow_as<Empty>},
    {&typeid(Full), rethrow_as<Full>},
    {&typeid(BrokenBarrierError), rethrow_as<BrokenBarrierError>},
    {&typeid(EOFError), rethrow_as<EOFError>},
    {&typeid(ValueError), rethrow_as<ValueError>},
    {&typeid(SerializationError), rethrow_as<SerializationError>},
};

// Python: how multiprocessing.pool sends a task's exception back to the parent.
inline std::vector<std::byte> pack_exception(std::exception_ptr e) {
    if (!e) throw ValueError("mp::detail::pack_exception: the exception_ptr is null");
    packed_exception p;
    try {
        std::rethrow_exception(e);
    } catch (const RemoteError& x) {  // forwarded again: keep the original type and message
        p.type = x.type_name();
        p.message = x.message();
    } catch (const std::exception& x) {
        p.type = demangle(typeid(x).name());
        p.message = x.what();
        if (auto* s = dynamic_cast<const std::system_error*>(&x)) {
            using cat = packed_exception::category;
            const auto& c = s->code().category();
            p.code_category = c == std::generic_category() ? cat::generic
                              : c == std::system_category() ? cat::system
                                                            : cat::none;
            p.code = s->code().value();
        }
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        p.type = t ? demangle(t->name()) : "unknown exception";
        p.message = "unknown exception (not derived from std::exception)";
    }
    std::vector<std::byte> out{exception_magic};
    writer(out).write(p);
    return out;
}

// Throws what pack_exception packed: as its own type when registered, else as RemoteError.
[[noreturn]] inline void rethrow_packed_exception(std::span<const std::byte> bytes) {
    reader r(bytes);
    if (r.take(1, "the exception header")[0] != exception_magic)
        r.fail("not a packed exception (bad magic byte)");
    auto p = r.read<packed_exception>();
    r.expect_end();
    if (p.code_category > packed_exception::category::system)
        throw SerializationError("mp::rethrow_packed_exception: unknown error category");
    // By name: only the name crossed, and type_info objects are not comparable across processes.
    for (const auto& entry : exception_registry)
        if (demangle(entry.type->name()) == p.type) entry.rethrow(p);
    throw RemoteError(std::move(p.type), std::move(p.message));
}

}  // namespace detail
}  // namespace multiprocessing
