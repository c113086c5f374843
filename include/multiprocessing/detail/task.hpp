// What a Pool task is made of, and how a worker runs one. A task names its code by code_ref (an
// instantiation of run_chunk below), so it survives spawn's fresh address space; the callable
// travels as a code_ref (function pointer), as nothing (captureless lambda), or serialized.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "../serialization.hpp"
#include "code_ref.hpp"
#include "fd_table.hpp"

namespace multiprocessing {

namespace detail {
template <class F>
inline constexpr bool is_function_pointer =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;
// A captureless lambda or an empty function object: rebuilt from nothing in the worker.
template <class F>
inline constexpr bool is_stateless_callable =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F> &&
    std::is_trivially_copyable_v<F>;
}  // namespace detail

// Python: what Pool can pickle as a task: a function pointer, a captureless lambda, or a
// serializable function object. A capturing lambda is not one (Python: "can't pickle lambda").
template <class F>
concept task_function = detail::is_function_pointer<std::decay_t<F>> ||
                        detail::is_stateless_callable<std::decay_t<F>> ||
                        (std::is_class_v<std::decay_t<F>> && serializable<std::decay_t<F>>);

namespace detail {

template <class F>
consteval void require_task_function() {
    static_assert(task_function<F>,
                  "mp::Pool: a task must be a function pointer, a captureless lambda or a "
                  "serializable function object; a lambda with captures cannot be sent to "
                  "another process (Python: can't pickle a lambda). Pass the captured values "
                  "as arguments instead.");
}

// A function's result as it travels: void becomes std::monostate (Python's None).
template <class R>
using wire_result = std::conditional_t<std::is_void_v<R>, std::monostate, std::decay_t<R>>;

template <class F, class... Args>
wire_result<std::invoke_result_t<F&, Args&...>> call_for_wire(F& f, Args&... args) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, Args&...>>) {
        std::invoke(f, args...);
        return {};
    } else {
        return std::invoke(f, args...);
    }
}

template <class F>
void write_callable(writer& w, const F& f) {
    if constexpr (is_function_pointer<F>) w.write(to_code_ref(f));
    else if constexpr (is_stateless_callable<F>) (void)f;
    else w.write(f);
}

template <class F>
F read_callable(reader& r) {
    if constexpr (is_function_pointer<F>) return from_code_ref_as<F>(r.read<code_ref>());
    else if constexpr (is_stateless_callable<F>) return F{};
    else return r.read<F>();
}

// Runs in a worker: a chunk of `Arg`s (each a tuple of arguments when `Star`, as starmap and
// apply give them) through F, writing the vector of results.
using invoker = void (*)(reader& in, writer& out);

// One element of a chunk through F: the element is the argument, or (Star) a tuple of them.
template <bool Star, class F, class Arg>
auto invoke_one(F& f, Arg& a) {
    if constexpr (Star) return std::apply([&](auto&... xs) { return call_for_wire(f, xs...); }, a);
    else return call_for_wire(f, a);
}

template <class F, class Arg, bool Star>
using chunk_result_t = decltype(invoke_one<Star>(std::declval<F&>(), std::declval<Arg&>()));

template <class F, class Arg, bool Star>
void run_chunk(reader& in, writer& out) {
    F f = read_callable<F>(in);
    auto args = in.read<std::vector<Arg>>();
    in.expect_end();
    end_of_arguments();
    std::vector<chunk_result_t<F, Arg, Star>> results;
    results.reserve(args.size());
    for (auto& a : args) results.push_back(invoke_one<Star>(f, a));
    out.write(results);
}

// Encodes the start of a task: which code runs it and the callable.
template <class F, class Arg, bool Star>
void write_task_head(writer& w, const F& f) {
    w.write(to_code_ref(&run_chunk<F, Arg, Star>));
    write_callable(w, f);
}

// Encodes `n` elements of an input range as a std::vector<Arg> would be encoded, without
// building one; contiguous runs of plain data go as one memcpy.
template <class Arg, class It>
It write_elements(writer& w, It it, std::size_t n) {
    w.write_size(n);
    using V = std::iter_value_t<It>;
    if constexpr (std::contiguous_iterator<It> && std::same_as<V, Arg> && bulk<Arg>()) {
        w.write_bytes(std::to_address(it), n * sizeof(Arg));
        return it + std::ptrdiff_t(n);
    } else {
        for (std::size_t i = 0; i < n; ++i, ++it) {
            if constexpr (std::same_as<std::remove_cvref_t<std::iter_reference_t<It>>, Arg>)
                w.write(*it);
            else
                w.write(Arg(*it));
        }
        return it;
    }
}

// Decodes a chunk's std::vector<R> straight into the results, from `first` on (which has room
// for `room` of them): no intermediate vector, one memcpy for plain data.
template <class R, class It>
std::size_t read_results_into(reader& r, It first, std::size_t room) {
    std::uint64_t n = r.read_size();
    if (n > room) r.fail("a chunk returned more results than it had inputs");
    if constexpr (bulk<R>() && std::contiguous_iterator<It>) {
        auto bytes = r.take(std::size_t(n) * sizeof(R), "a chunk of results");
        if (n) std::memcpy(static_cast<void*>(std::to_address(first)), bytes.data(), bytes.size());
    } else {
        for (std::uint64_t i = 0; i < n; ++i, ++first) {
            decoding_scope placeholder;  // R v{} is a placeholder, not a new object
            R v{};
            r.read_into(v);
            *first = std::move(v);
        }
    }
    r.expect_end();
    return std::size_t(n);
}

}  // namespace detail
}  // namespace multiprocessing
