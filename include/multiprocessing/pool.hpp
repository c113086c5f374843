// Python: multiprocessing.pool. Pool, AsyncResult and the imap iterators, on the worker
// machinery of detail/worker_pool.hpp (shared with futures.hpp).
#pragma once

#include <any>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <set>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/task.hpp"
#include "detail/timeout.hpp"
#include "detail/worker_pool.hpp"
#include "errors.hpp"
#include "process.hpp"
#include "serialization.hpp"

namespace multiprocessing {

class Pool;
namespace futures {
class ProcessPoolExecutor;
}

namespace detail {

// The parameters of a callable, decayed, as the tuple its arguments travel in.
template <class F>
struct callable_params : callable_params<decltype(&F::operator())> {};
template <class R, class... A>
struct callable_params<R (*)(A...)> {
    using type = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct callable_params<R (*)(A...) noexcept> : callable_params<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_params<R (C::*)(A...) const> : callable_params<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_params<R (C::*)(A...) const noexcept> : callable_params<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_params<R (C::*)(A...)> : callable_params<R (*)(A...)> {};

// Arguments as they travel: a string literal becomes a std::string.
template <class T>
using wire_arg = std::conditional_t<std::is_convertible_v<T, std::string_view> &&
                                        !std::is_same_v<std::decay_t<T>, std::string>,
                                    std::string, std::decay_t<T>>;

// Python's Pool(initializer=...): a task function, bound to the initargs when the pool is made.
class initializer_fn {
public:
    initializer_fn() = default;
    template <class F>
        requires(!std::same_as<std::decay_t<F>, initializer_fn>)
    initializer_fn(F&& f) {  // NOLINT: implicit, for `.initializer = init`
        using Fn = std::decay_t<F>;
        require_task_function<Fn>();
        using Params = typename callable_params<Fn>::type;
        bind_ = [fn = Fn(std::forward<F>(f))](const std::any& args) -> std::shared_ptr<worker_init> {
            const auto* a = std::any_cast<Params>(&args);
            if (!a) return nullptr;
            return std::make_shared<bound_init<Fn, Params>>(fn, *a);
        };
        params_ = std::string(type_name<Params>());
    }
    explicit operator bool() const noexcept { return bool(bind_); }

private:
    friend class multiprocessing::Pool;
    // Null when the arguments are not the initializer's parameters.
    std::function<std::shared_ptr<worker_init>(const std::any&)> bind_;
    std::string params_;
};

// Python's Pool(initargs=...): the arguments as they travel, with their types' name. Kept as
// values, not bytes: handles among them (a Lock, a Queue) are written into each worker's start
// record when that worker starts.
class packed_args {
public:
    packed_args() : packed_args(std::tuple<>{}) {}
    template <class... A>
    packed_args(const std::tuple<A...>& args) {  // NOLINT: implicit, for `.initargs = {...}`
        using Wire = std::tuple<wire_arg<A>...>;
        require_serializable<Wire>();
        args_ = std::apply([](const auto&... a) { return Wire(a...); }, args);
        types_ = std::string(type_name<Wire>());
    }

private:
    friend class multiprocessing::Pool;
    std::any args_;
    std::string types_;
};

// The shared state behind an AsyncResult.
template <class T>
struct result_state {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    bool settling = false;  // outcome known, callbacks running
    std::optional<T> value;
    std::exception_ptr error;
    std::function<void(const T&)> callback;
    std::function<void(std::exception_ptr)> error_callback;
    std::vector<std::function<void()>> on_done;  // run once done, whatever the outcome

    virtual ~result_state() = default;

    // As Python's ApplyResult._set: the callback runs first, then the result is ready.
    void set_value(T v) {
        {
            std::lock_guard lock(mutex);
            if (done || settling) return;
            value.emplace(std::move(v));
            settling = true;
        }
        if (callback) callback(*value);
        finish();
    }
    void set_error(std::exception_ptr e) {
        {
            std::lock_guard lock(mutex);
            if (done || settling) return;
            error = e;
            settling = true;
        }
        if (error_callback) error_callback(e);
        finish();
    }
    void finish() {
        std::vector<std::function<void()>> fns;
        {
            std::lock_guard lock(mutex);
            done = true;
            fns.swap(on_done);
        }
        cv.notify_all();
        for (auto& f : fns) f();
    }
    bool wait_until(detail::deadline deadline) {
        std::unique_lock lock(mutex);
        while (!done) {
            if (deadline == forever) {
                cv.wait(lock);
            } else {
                auto left = remaining_ns(deadline);
                if (left == 0) return false;
                cv.wait_for(lock, std::chrono::nanoseconds(left));
            }
        }
        return true;
    }
};

inline std::exception_ptr unpack_error(std::span<const std::byte> payload) {
    try {
        rethrow_packed_exception(payload);
    } catch (...) {
        return std::current_exception();
    }
}

// apply_async (Single) and map_async: a fixed set of chunks filling one result.
template <class R, bool Single>
struct eager_job final : job_base {
    using value_type = std::conditional_t<Single, R, std::vector<R>>;

    eager_job(std::shared_ptr<result_state<value_type>> s, std::vector<std::size_t> starts)
        : state(std::move(s)), starts(std::move(starts)), done(this->starts.size() - 1, 0),
          left(this->starts.size() - 1) {
        decoding_scope placeholders;  // the results are decoded into these later
        results.resize(this->starts.back());
    }

    chunk_outcome on_result(std::uint64_t chunk, bool ok, std::span<const std::byte> payload) override {
        if (ok) {
            try {
                if (chunk < done.size() && !done[chunk]) {
                    reader r(payload);
                    std::size_t room = starts[chunk + 1] - starts[chunk];
                    if (read_results_into<R>(r, results.begin() + std::ptrdiff_t(starts[chunk]), room) != room)
                        r.fail("a chunk returned fewer results than it had inputs");
                }
            } catch (...) {
                return settle(chunk, std::current_exception());
            }
            return settle(chunk, nullptr);
        }
        return settle(chunk, unpack_error(payload));
    }
    chunk_outcome on_failure(std::uint64_t chunk, std::exception_ptr e) override {
        return settle(chunk, e);
    }
    std::size_t fail_all(std::exception_ptr e) override {
        std::size_t n = left;
        for (auto& d : done) d = 1;
        left = 0;
        state->set_error(first_error ? first_error : e);
        return n;
    }

    // As Python's MapResult: the first error wins, but the result is ready only when every
    // chunk has answered.
    chunk_outcome settle(std::uint64_t chunk, std::exception_ptr e) {
        if (chunk >= done.size() || done[chunk]) return {false, left == 0};
        done[chunk] = 1;
        --left;
        if (e && !first_error) first_error = e;
        if (left == 0) {
            if (first_error) state->set_error(first_error);
            else if constexpr (Single) state->set_value(std::move(results[0]));
            else state->set_value(std::move(results));
        }
        return {true, left == 0};
    }

    std::shared_ptr<result_state<value_type>> state;
    std::vector<std::size_t> starts;  // chunk i covers [starts[i], starts[i+1])
    std::vector<char> done;
    std::size_t left;
    std::vector<R> results;
    std::exception_ptr first_error;
};

// imap / imap_unordered: chunks put lazily by the consumer, results handed over as they come.
template <class R>
struct lazy_job final : job_base {
    explicit lazy_job(bool ordered) : ordered(ordered) {}

    chunk_outcome on_result(std::uint64_t chunk, bool ok, std::span<const std::byte> payload) override {
        if (!ok) return settle(chunk, unpack_error(payload), {});
        try {
            auto values = deserialize<std::vector<R>>(payload);
            return settle(chunk, nullptr, std::move(values));
        } catch (...) {
            return settle(chunk, std::current_exception(), {});
        }
    }
    chunk_outcome on_failure(std::uint64_t chunk, std::exception_ptr e) override {
        return settle(chunk, e, {});
    }
    std::size_t fail_all(std::exception_ptr e) override {
        std::lock_guard lock(mutex);
        std::size_t n = submitted - resolved;
        resolved = submitted;
        in_flight.clear();
        broken = e;
        cv.notify_all();
        return n;
    }

    chunk_outcome settle(std::uint64_t chunk, std::exception_ptr e, std::vector<R> values) {
        std::lock_guard lock(mutex);
        if (!in_flight.erase(chunk)) return {false, detached && resolved == submitted};
        ++resolved;
        ready.emplace(chunk, entry{std::move(values), e});
        cv.notify_all();
        return {true, detached && resolved == submitted};
    }

    struct entry {
        std::vector<R> values;
        std::exception_ptr error;
    };

    std::mutex mutex;
    std::condition_variable cv;
    const bool ordered;
    std::map<std::uint64_t, entry> ready;  // answered chunks not yet handed over
    std::uint64_t next_ordered = 0;        // imap: the chunk to hand over next
    std::uint64_t submitted = 0, resolved = 0, consumed = 0;
    std::set<std::uint64_t> in_flight;     // put, not yet answered
    bool detached = false;
    std::exception_ptr broken;
};

}  // namespace detail

// Python: multiprocessing.pool.AsyncResult (ApplyResult / MapResult)
template <class T>
class AsyncResult {
public:
    explicit AsyncResult(std::shared_ptr<detail::result_state<T>> s) : s_(std::move(s)) {}

    // Python: get(); rethrows the task's exception.
    T get() const& { return get_until(detail::forever); }
    T get() && { return std::move(*this).get_until(detail::forever); }
    // Python: get(timeout); throws mp::TimeoutError when it passes first.
    template <detail::timeout_like Timeout>
    T get(Timeout timeout) const& {
        return get_until(detail::deadline_after(timeout));
    }
    template <detail::timeout_like Timeout>
    T get(Timeout timeout) && {
        return std::move(*this).get_until(detail::deadline_after(timeout));
    }

    // Python: wait() / wait(timeout); returns false when the timeout passes first.
    void wait() const { s_->wait_until(detail::forever); }
    template <detail::timeout_like Timeout>
    bool wait(Timeout timeout) const {
        return s_->wait_until(detail::deadline_after(timeout));
    }

    // Python: ready()
    bool ready() const {
        std::lock_guard lock(s_->mutex);
        return s_->done;
    }
    // Python: successful(); throws (Python's ValueError) when the result is not ready.
    bool successful() const {
        std::lock_guard lock(s_->mutex);
        if (!s_->done) throw ValueError("AsyncResult is not ready");
        return !s_->error;
    }

private:
    T get_until(detail::deadline deadline) const& {
        if (!s_->wait_until(deadline)) throw TimeoutError("timed out waiting for the result");
        std::lock_guard lock(s_->mutex);
        if (s_->error) std::rethrow_exception(s_->error);
        return *s_->value;
    }
    T get_until(detail::deadline deadline) && {
        if (!s_->wait_until(deadline)) throw TimeoutError("timed out waiting for the result");
        std::lock_guard lock(s_->mutex);
        if (s_->error) std::rethrow_exception(s_->error);
        // The last handle may take the value instead of copying it.
        if (s_.use_count() == 1) return std::move(*s_->value);
        return *s_->value;
    }

    std::shared_ptr<detail::result_state<T>> s_;
};

// Python: the iterator returned by Pool.imap / imap_unordered: a lazy input range, pulled with
// bounded look-ahead as results are consumed, so an endless input runs in bounded memory.
template <class R, class View, class F, class Arg, bool Star>
class IMapIterator {
public:
    IMapIterator(std::shared_ptr<detail::worker_pool> pool, F f, View input, std::size_t chunksize,
                 bool ordered)
        : pool_(std::move(pool)), f_(std::move(f)), input_(std::move(input)),
          it_(std::ranges::begin(input_)), chunksize_(chunksize),
          lookahead_(std::size_t(4 * pool_->processes())),
          job_(std::make_shared<detail::lazy_job<R>>(ordered)) {
        if constexpr (std::ranges::sized_range<View>) total_ = std::size_t(std::ranges::size(input_));
        id_ = pool_->add_job(job_);
        top_up();
    }
    IMapIterator(const IMapIterator&) = delete;
    IMapIterator& operator=(const IMapIterator&) = delete;
    IMapIterator(IMapIterator&&) = default;
    ~IMapIterator() {
        if (!job_) return;
        std::lock_guard lock(job_->mutex);
        job_->detached = true;
        if (job_->resolved == job_->submitted) pool_->release_job(id_);
    }

    // Python: next(timeout): the next result; std::nullopt at the end; mp::TimeoutError when the
    // timeout passes first; a task's exception is rethrown here, at its place.
    std::optional<R> next() { return next_until(detail::forever); }
    template <detail::timeout_like Timeout>
    std::optional<R> next(Timeout timeout) {
        return next_until(detail::deadline_after(timeout));
    }

    // The number of items, when the input knows it (for progress bars).
    std::optional<std::size_t> length_hint() const { return total_; }

    // Iterating (begin/++) waits at most until this monotonic deadline, then throws
    // mp::TimeoutError (Executor.map's timeout counts from the call).
    void set_deadline(detail::deadline deadline) { deadline_ = deadline; }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
        const R& operator*() const { return *current_; }
        iterator& operator++() {
            current_ = owner_->next_until(owner_->deadline_);
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& i, std::default_sentinel_t) { return !i.current_; }

    private:
        IMapIterator* owner_ = nullptr;
        std::optional<R> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

private:
    // Puts chunks until `lookahead_` are in flight or the input ends.
    void top_up() {
        while (!input_done_) {
            {
                std::lock_guard lock(job_->mutex);
                if (job_->submitted - job_->consumed >= lookahead_) return;
            }
            buf_.clear();
            detail::writer w(buf_);
            detail::write_task_head<F, Arg, Star>(w, f_);
            // A chunk is at most `chunksize_` items, fewer at the end of the input.
            std::vector<Arg> items;
            items.reserve(chunksize_);
            for (; items.size() < chunksize_ && it_ != std::ranges::end(input_); ++it_)
                items.push_back(Arg(*it_));
            if (it_ == std::ranges::end(input_)) input_done_ = true;
            if (items.empty()) break;
            w.write(items);
            std::uint64_t chunk;
            {
                std::lock_guard lock(job_->mutex);
                chunk = job_->submitted++;
                job_->in_flight.insert(chunk);
            }
            pool_->put_task(id_, chunk, {std::span<const std::byte>(buf_)});
        }
    }

    std::optional<R> next_until(detail::deadline deadline) {
        for (;;) {
            {
                std::unique_lock lock(job_->mutex);
                if (!pending_.empty()) {
                    R v = std::move(pending_.front());
                    pending_.pop_front();
                    return v;
                }
                auto& ready = job_->ready;
                auto it = job_->ordered ? ready.find(job_->next_ordered) : ready.begin();
                if (it != ready.end()) {
                    auto entry = std::move(it->second);
                    ready.erase(it);
                    ++job_->next_ordered;
                    ++job_->consumed;
                    if (entry.error) std::rethrow_exception(entry.error);
                    pending_.assign(std::make_move_iterator(entry.values.begin()),
                                    std::make_move_iterator(entry.values.end()));
                    continue;
                }
                if (job_->broken) std::rethrow_exception(job_->broken);
                if (input_done_ && job_->consumed == job_->submitted) return std::nullopt;
            }
            top_up();
            std::unique_lock lock(job_->mutex);
            bool available = job_->ordered ? job_->ready.count(job_->next_ordered) > 0
                                           : !job_->ready.empty();
            if (available || job_->broken) continue;
            if (deadline == detail::forever) {
                job_->cv.wait(lock);
            } else {
                auto left = detail::remaining_ns(deadline);
                if (left == 0) throw TimeoutError("timed out waiting for the next result");
                job_->cv.wait_for(lock, std::chrono::nanoseconds(left));
            }
        }
    }

    std::shared_ptr<detail::worker_pool> pool_;
    F f_;
    View input_;
    std::ranges::iterator_t<View> it_;
    std::size_t chunksize_;
    std::size_t lookahead_;
    std::optional<std::size_t> total_;
    std::shared_ptr<detail::lazy_job<R>> job_;
    std::uint64_t id_ = 0;
    bool input_done_ = false;
    detail::deadline deadline_ = detail::forever;
    std::deque<R> pending_;
    std::vector<std::byte> buf_;
};

// Python: multiprocessing.Pool's keyword arguments.
struct PoolOptions {
    std::optional<int> processes = std::nullopt;        // default: process_cpu_count()
    detail::initializer_fn initializer = {};            // run once in each worker
    detail::packed_args initargs = {};                  // as a std::tuple
    int maxtasksperchild = 0;                           // 0: None, workers are never replaced
    std::string context = {};                           // a start method; empty: the default
};

// Python: multiprocessing.Pool
class Pool {
public:
    Pool() : Pool(PoolOptions{}) {}
    explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
    // Python: Pool(processes, initializer, initargs, maxtasksperchild)
    template <class F, class... A>
    Pool(int processes, F&& initializer, std::tuple<A...> initargs = {}, int maxtasksperchild = 0)
        : Pool(PoolOptions{.processes = processes,
                           .initializer = std::forward<F>(initializer),
                           .initargs = initargs,
                           .maxtasksperchild = maxtasksperchild}) {}
    explicit Pool(PoolOptions options) : pool_(make_pool(std::move(options))) {}

    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;
    Pool(Pool&&) = default;
    Pool& operator=(Pool&&) = default;
    // Python: Pool.__exit__ terminates.
    ~Pool() {
        if (pool_) pool_->terminate();
    }

    // Python: Pool.apply(f, args)
    template <class F, class... A>
    auto apply(F&& f, std::tuple<A...> args = {}) {
        return apply_async(std::forward<F>(f), std::move(args)).get();
    }

    // Python: Pool.apply_async(f, args, callback, error_callback)
    template <class F, class... A, class Callback = std::nullptr_t, class ErrorCallback = std::nullptr_t>
    auto apply_async(F&& f, std::tuple<A...> args = {}, Callback callback = nullptr,
                     ErrorCallback error_callback = nullptr) {
        using Fn = std::decay_t<F>;
        detail::require_task_function<Fn>();
        using Arg = std::tuple<detail::wire_arg<A>...>;
        static_assert(std::is_invocable_v<Fn&, detail::wire_arg<A>&...>,
                      "mp::Pool::apply_async: the function cannot be called with these arguments");
        using R = detail::chunk_result_t<Fn, Arg, true>;
        auto state = make_state<R>(std::move(callback), std::move(error_callback));
        auto id = pool_->add_job(
            std::make_shared<detail::eager_job<R, true>>(state, std::vector<std::size_t>{0, 1}));
        std::vector<Arg> one;
        one.emplace_back(std::apply([](auto&... a) { return Arg(a...); }, args));
        put_chunk<Fn, Arg, true>(id, 0, f, [&](detail::writer& w) { w.write(one); });
        return AsyncResult<R>(state);
    }

    // Python: Pool.map(f, iterable, chunksize) -> list; here a std::vector.
    template <class F, std::ranges::input_range Range>
    auto map(F&& f, Range&& range, std::optional<std::size_t> chunksize = std::nullopt) {
        return map_async(std::forward<F>(f), std::forward<Range>(range), chunksize).get();
    }

    // Python: Pool.map_async(f, iterable, chunksize, callback, error_callback)
    template <class F, std::ranges::input_range Range, class Callback = std::nullptr_t,
              class ErrorCallback = std::nullptr_t>
    auto map_async(F&& f, Range&& range, std::optional<std::size_t> chunksize = std::nullopt,
                   Callback callback = nullptr, ErrorCallback error_callback = nullptr) {
        return eager_map<false>(std::forward<F>(f), std::forward<Range>(range), chunksize,
                                std::move(callback), std::move(error_callback));
    }

    // Python: Pool.starmap(f, iterable_of_tuples, chunksize)
    template <class F, std::ranges::input_range Range>
    auto starmap(F&& f, Range&& range, std::optional<std::size_t> chunksize = std::nullopt) {
        return starmap_async(std::forward<F>(f), std::forward<Range>(range), chunksize).get();
    }

    // Python: Pool.starmap_async(...)
    template <class F, std::ranges::input_range Range, class Callback = std::nullptr_t,
              class ErrorCallback = std::nullptr_t>
    auto starmap_async(F&& f, Range&& range, std::optional<std::size_t> chunksize = std::nullopt,
                       Callback callback = nullptr, ErrorCallback error_callback = nullptr) {
        return eager_map<true>(std::forward<F>(f), std::forward<Range>(range), chunksize,
                               std::move(callback), std::move(error_callback));
    }

    // Python: Pool.imap(f, iterable, chunksize=1): results in input order, lazily.
    template <class F, std::ranges::input_range Range>
    auto imap(F&& f, Range&& range, std::size_t chunksize = 1) {
        return lazy_map(std::forward<F>(f), std::forward<Range>(range), chunksize, true);
    }

    // Python: Pool.imap_unordered(f, iterable, chunksize=1): results as they complete.
    template <class F, std::ranges::input_range Range>
    auto imap_unordered(F&& f, Range&& range, std::size_t chunksize = 1) {
        return lazy_map(std::forward<F>(f), std::forward<Range>(range), chunksize, false);
    }

    // Python: Pool.close(), Pool.terminate(), Pool.join()
    void close() { pool().close(); }
    void terminate() { pool().terminate(); }
    void join() { pool().join(); }

    // The worker processes' pids (for tests and diagnostics).
    std::vector<int> worker_pids() { return pool().worker_pids(); }
    int processes() { return pool().processes(); }

private:
    friend class futures::ProcessPoolExecutor;

    // `adjust` lets the executor word and handle worker deaths its own way.
    static std::shared_ptr<detail::worker_pool> make_pool(PoolOptions o,
                                                          void (*adjust)(detail::pool_config&) = nullptr) {
        detail::pool_config c;
        c.processes = o.processes ? *o.processes : process_cpu_count();
        if (c.processes < 1) throw ValueError("Number of processes must be at least 1");
        if (o.maxtasksperchild < 0)
            throw ValueError("maxtasksperchild must be a positive int or None");
        c.maxtasksperchild = o.maxtasksperchild;
        c.start_method = std::move(o.context);
        if (o.initializer) {
            c.initializer = o.initializer.bind_(o.initargs.args_);
            if (!c.initializer)
                throw ValueError("Pool: initargs of type " + o.initargs.types_ +
                                 " do not match the initializer's parameters " +
                                 o.initializer.params_);
        } else if (o.initargs.types_ != type_name<std::tuple<>>()) {
            throw ValueError("Pool: initargs given without an initializer");
        }
        if (adjust) adjust(c);
        return std::make_shared<detail::worker_pool>(std::move(c));
    }

    detail::worker_pool& pool() {
        if (!pool_) throw ValueError("Pool was moved from");
        return *pool_;
    }

    template <class Value, class Callback, class ErrorCallback>
    static auto make_state(Callback callback, ErrorCallback error_callback) {
        auto state = std::make_shared<detail::result_state<Value>>();
        if constexpr (!std::is_null_pointer_v<Callback>) state->callback = std::move(callback);
        if constexpr (!std::is_null_pointer_v<ErrorCallback>) {
            if constexpr (std::is_invocable_v<ErrorCallback&, std::exception_ptr>) {
                state->error_callback = std::move(error_callback);
            } else {
                // A callback taking the exception itself, as Python's does.
                state->error_callback = [cb = std::move(error_callback)](std::exception_ptr e) mutable {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                        cb(ex);
                    } catch (...) {
                    }
                };
            }
        }
        return state;
    }

    // Writes a task record in this thread's buffer and puts it.
    template <class Fn, class Arg, bool Star, class Body>
    void put_chunk(std::uint64_t id, std::uint64_t chunk, const Fn& f, Body&& body) {
        thread_local std::vector<std::byte> buf;
        buf.clear();
        detail::writer w(buf);
        detail::write_task_head<Fn, Arg, Star>(w, f);
        body(w);
        pool().put_task(id, chunk, {std::span<const std::byte>(buf)});
    }

    template <bool Star, class F, class Range, class Callback, class ErrorCallback>
    auto eager_map(F&& f, Range&& range, std::optional<std::size_t> chunksize, Callback callback,
                   ErrorCallback error_callback) {
        using Fn = std::decay_t<F>;
        detail::require_task_function<Fn>();
        using Arg = std::ranges::range_value_t<Range>;
        if constexpr (Star)
            static_assert(requires(Fn& fn, Arg& a) { std::apply(fn, a); },
                          "mp::Pool::starmap: the function cannot be called with the elements "
                          "of each tuple");
        else
            static_assert(std::is_invocable_v<Fn&, Arg&>,
                          "mp::Pool::map: the function cannot be called with the range's elements");
        using R = detail::chunk_result_t<Fn, Arg, Star>;
        if constexpr (!std::ranges::sized_range<Range> || !std::ranges::forward_range<Range>) {
            // Python's list(iterable): an input that can be walked only once is collected first.
            std::vector<Arg> items;
            for (auto&& x : range) items.push_back(Arg(x));
            return eager_map<Star>(std::forward<F>(f), items, chunksize, std::move(callback),
                                   std::move(error_callback));
        } else {
            const std::size_t n = std::size_t(std::ranges::size(range));
            std::size_t size = chunksize ? *chunksize : default_chunksize(n);
            if (size == 0) throw ValueError("Chunksize must be 1+, not 0");
            std::vector<std::size_t> starts{0};
            for (std::size_t at = 0; at < n; at += size) starts.push_back(std::min(n, at + size));
            if (n == 0) starts.push_back(0);  // one empty chunk, so that the job completes
            auto state = make_state<std::vector<R>>(std::move(callback), std::move(error_callback));
            auto id = pool().add_job(std::make_shared<detail::eager_job<R, false>>(state, starts));
            auto it = std::ranges::begin(range);
            for (std::size_t c = 0; c + 1 < starts.size(); ++c) {
                std::size_t count = starts[c + 1] - starts[c];
                if constexpr (std::ranges::contiguous_range<Range> && detail::bulk<Arg>()) {
                    // Plain data goes from the input straight into the task queue: one copy.
                    thread_local std::vector<std::byte> head;
                    head.clear();
                    detail::writer w(head);
                    detail::write_task_head<Fn, Arg, Star>(w, f);
                    w.write_size(count);
                    auto bytes = std::as_bytes(std::span(std::to_address(it), count));
                    pool().put_task(id, c, {std::span<const std::byte>(head), bytes});
                    it += std::ptrdiff_t(count);
                } else {
                    put_chunk<Fn, Arg, Star>(id, c, f, [&](detail::writer& w) {
                        it = detail::write_elements<Arg>(w, it, count);
                    });
                }
            }
            return AsyncResult<std::vector<R>>(state);
        }
    }

    template <class F, class Range>
    auto lazy_map(F&& f, Range&& range, std::size_t chunksize, bool ordered) {
        using Fn = std::decay_t<F>;
        detail::require_task_function<Fn>();
        if (chunksize == 0) throw ValueError("Chunksize must be 1+, not 0");
        using View = std::views::all_t<Range>;
        using Arg = std::ranges::range_value_t<Range>;
        static_assert(std::is_invocable_v<Fn&, Arg&>,
                      "mp::Pool::imap: the function cannot be called with the range's elements");
        using R = detail::chunk_result_t<Fn, Arg, false>;
        return IMapIterator<R, View, Fn, Arg, false>(pool_, Fn(f), std::views::all(std::forward<Range>(range)),
                                                     chunksize, ordered);
    }

    // Python's default: four chunks per worker.
    std::size_t default_chunksize(std::size_t n) {
        std::size_t per = std::size_t(processes()) * 4;
        std::size_t size = n / per + (n % per ? 1 : 0);
        return n == 0 ? 1 : size;
    }

    std::shared_ptr<detail::worker_pool> pool_;
};

}  // namespace multiprocessing
