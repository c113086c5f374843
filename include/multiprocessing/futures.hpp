// Python: concurrent.futures' ProcessPoolExecutor, Future, as_completed and wait, on the same
// worker machinery as Pool (detail/worker_pool.hpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "pool.hpp"

namespace multiprocessing::futures {

// Python: concurrent.futures.process.BrokenProcessPool
class BrokenProcessPool : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Python: concurrent.futures.CancelledError
class CancelledError : public std::runtime_error {
public:
    CancelledError() : std::runtime_error("the future was cancelled") {}
};

namespace detail {

using namespace multiprocessing::detail;

template <class T>
struct future_state final : result_state<T> {
    enum class phase { pending, running, cancelled };
    phase stage = phase::pending;
};

}  // namespace detail

// Python: concurrent.futures.Future. A copy refers to the same future.
template <class T>
class Future {
public:
    explicit Future(std::shared_ptr<detail::future_state<T>> s) : s_(std::move(s)) {}

    // Python: result(timeout): the value, or the task's exception, CancelledError, TimeoutError.
    T result() const { return result_until(detail::forever); }
    template <detail::timeout_like Timeout>
    T result(Timeout timeout) const {
        return result_until(detail::deadline_after(timeout));
    }

    // Python: exception(timeout): the task's exception, or nullptr when it succeeded.
    std::exception_ptr exception() const { return exception_until(detail::forever); }
    template <detail::timeout_like Timeout>
    std::exception_ptr exception(Timeout timeout) const {
        return exception_until(detail::deadline_after(timeout));
    }

    // Python: done(), running(), cancelled()
    bool done() const {
        std::lock_guard lock(s_->mutex);
        return s_->done;
    }
    bool running() const {
        std::lock_guard lock(s_->mutex);
        return !s_->done && s_->stage == detail::future_state<T>::phase::running;
    }
    bool cancelled() const {
        std::lock_guard lock(s_->mutex);
        return s_->stage == detail::future_state<T>::phase::cancelled;
    }

    // Python: cancel(): succeeds only while the call waits for a worker.
    bool cancel() {
        {
            std::lock_guard lock(s_->mutex);
            if (s_->stage == detail::future_state<T>::phase::cancelled) return true;
            if (s_->stage == detail::future_state<T>::phase::running || s_->done) return false;
            s_->stage = detail::future_state<T>::phase::cancelled;
        }
        s_->set_error(std::make_exception_ptr(CancelledError()));
        return true;
    }

    // Python: add_done_callback(fn): fn(future) runs once the future is done (at once if it is).
    template <class F>
    void add_done_callback(F fn) {
        {
            std::lock_guard lock(s_->mutex);
            if (!s_->done) {
                s_->on_done.push_back([fn, self = *this]() mutable { fn(self); });
                return;
            }
        }
        fn(*this);
    }

    // Waits at most until `deadline`; true once done.
    bool wait_until(detail::deadline deadline) const { return s_->wait_until(deadline); }

private:
    T result_until(detail::deadline deadline) const {
        if (!s_->wait_until(deadline)) throw TimeoutError("timed out waiting for the future");
        std::lock_guard lock(s_->mutex);
        if (s_->error) std::rethrow_exception(s_->error);
        return *s_->value;
    }
    std::exception_ptr exception_until(detail::deadline deadline) const {
        if (!s_->wait_until(deadline)) throw TimeoutError("timed out waiting for the future");
        std::lock_guard lock(s_->mutex);
        if (s_->stage == detail::future_state<T>::phase::cancelled) throw CancelledError();
        return s_->error;
    }

    std::shared_ptr<detail::future_state<T>> s_;
};

// Python: concurrent.futures.FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED
enum class return_when { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
inline constexpr return_when FIRST_COMPLETED = return_when::FIRST_COMPLETED;
inline constexpr return_when FIRST_EXCEPTION = return_when::FIRST_EXCEPTION;
inline constexpr return_when ALL_COMPLETED = return_when::ALL_COMPLETED;

// Python: ProcessPoolExecutor's keyword arguments.
struct ExecutorOptions {
    std::optional<int> max_workers = std::nullopt;
    detail::initializer_fn initializer = {};
    detail::packed_args initargs = {};
    int max_tasks_per_child = 0;
};

// Python: concurrent.futures.ProcessPoolExecutor
class ProcessPoolExecutor {
public:
    ProcessPoolExecutor() : ProcessPoolExecutor(ExecutorOptions{}) {}
    explicit ProcessPoolExecutor(int max_workers)
        : ProcessPoolExecutor(ExecutorOptions{.max_workers = max_workers}) {}
    template <class F, class... A>
    ProcessPoolExecutor(int max_workers, F&& initializer, std::tuple<A...> initargs = {},
                        int max_tasks_per_child = 0)
        : ProcessPoolExecutor(ExecutorOptions{.max_workers = max_workers,
                                              .initializer = std::forward<F>(initializer),
                                              .initargs = initargs,
                                              .max_tasks_per_child = max_tasks_per_child}) {}
    explicit ProcessPoolExecutor(ExecutorOptions o) : shared_(std::make_shared<shared>()) {
        if (o.max_workers && *o.max_workers <= 0)
            throw ValueError("max_workers must be greater than 0");
        shared_->pool = Pool::make_pool(PoolOptions{.processes = o.max_workers,
                                                    .initializer = std::move(o.initializer),
                                                    .initargs = std::move(o.initargs),
                                                    .maxtasksperchild = o.max_tasks_per_child},
                                        executor_config);
    }
    ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
    ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;
    // Python: the with-block's exit: shutdown(wait=True).
    ~ProcessPoolExecutor() {
        try {
            shutdown(true);
        } catch (...) {
        }
    }

    // Python: submit(fn, *args) -> Future
    template <class F, class... A>
    auto submit(F&& f, A&&... args) {
        using Fn = std::decay_t<F>;
        detail::require_task_function<Fn>();
        using Arg = std::tuple<detail::wire_arg<A>...>;
        static_assert(std::is_invocable_v<Fn&, detail::wire_arg<A>&...>,
                      "ProcessPoolExecutor::submit: the function cannot be called with these "
                      "arguments");
        using R = detail::chunk_result_t<Fn, Arg, true>;
        auto state = std::make_shared<detail::future_state<R>>();
        std::vector<Arg> one;
        one.emplace_back(std::forward<A>(args)...);
        std::vector<std::byte> record;
        detail::writer w(record);
        detail::write_task_head<Fn, Arg, true>(w, f);
        w.write(one);
        {
            std::lock_guard lock(shared_->mutex);
            if (shared_->shutdown) throw std::runtime_error("cannot schedule new futures after shutdown");
            if (auto e = shared_->broken) std::rethrow_exception(e);
            if (auto e = shared_->pool->broken()) std::rethrow_exception(e);
            shared_->pending.push_back(
                {[state, record = std::move(record), sh = std::weak_ptr<shared>(shared_)]() {
                     auto s = sh.lock();
                     if (!s) return;
                     {
                         std::lock_guard lock(state->mutex);
                         if (state->stage != detail::future_state<R>::phase::pending) {
                             // Cancelled while it waited: it holds no worker.
                             s->release();
                             return;
                         }
                         state->stage = detail::future_state<R>::phase::running;
                         state->on_done.push_back([w = std::weak_ptr<shared>(s)] {
                             if (auto s2 = w.lock()) s2->finished();
                         });
                     }
                     auto id = s->pool->add_job(std::make_shared<detail::eager_job<R, true>>(
                         state, std::vector<std::size_t>{0, 1}));
                     s->pool->put_task(id, 0, {std::span<const std::byte>(record)});
                 },
                 [state](std::exception_ptr e) { state->set_error(e); },
                 [state] {
                     {
                         std::lock_guard lock(state->mutex);
                         if (state->stage != detail::future_state<R>::phase::pending) return;
                         state->stage = detail::future_state<R>::phase::cancelled;
                     }
                     state->set_error(std::make_exception_ptr(CancelledError()));
                 }});
        }
        shared_->pump();
        return Future<R>(state);
    }

    // Python: map(fn, iterable, timeout, chunksize): results in order, lazily; the timeout
    // counts from this call.
    template <class F, std::ranges::input_range Range>
    auto map(F&& f, Range&& range, std::optional<double> timeout = std::nullopt,
             std::size_t chunksize = 1) {
        using Fn = std::decay_t<F>;
        detail::require_task_function<Fn>();
        if (chunksize == 0) throw ValueError("chunksize must be >= 1.");
        {
            std::lock_guard lock(shared_->mutex);
            if (shared_->shutdown) throw std::runtime_error("cannot schedule new futures after shutdown");
        }
        using View = std::views::all_t<Range>;
        using Arg = std::ranges::range_value_t<Range>;
        using R = detail::chunk_result_t<Fn, Arg, false>;
        auto deadline = detail::deadline_after(timeout);
        IMapIterator<R, View, Fn, Arg, false> it(shared_->pool, Fn(f),
                                                 std::views::all(std::forward<Range>(range)),
                                                 chunksize, true);
        it.set_deadline(deadline);
        return it;
    }

    // Python: shutdown(wait=True, cancel_futures=False)
    void shutdown(bool wait = true, bool cancel_futures = false) {
        std::deque<pending_call> cancelled;
        {
            std::lock_guard lock(shared_->mutex);
            shared_->shutdown = true;
            if (cancel_futures) cancelled.swap(shared_->pending);
        }
        for (auto& c : cancelled) c.cancel();
        if (!wait) return;
        std::unique_lock lock(shared_->mutex);
        shared_->idle.wait(lock, [&] { return shared_->pending.empty() && shared_->inflight == 0; });
        lock.unlock();
        shared_->pool->close();
        shared_->pool->join();
    }

private:
    struct pending_call {
        std::function<void()> start;
        std::function<void(std::exception_ptr)> fail;
        std::function<void()> cancel;
    };

    // State shared with the callbacks that run on the handler thread.
    struct shared {
        std::shared_ptr<detail::worker_pool> pool;
        std::mutex mutex;
        std::condition_variable idle;
        std::deque<pending_call> pending;
        std::size_t inflight = 0;
        bool shutdown = false;
        std::exception_ptr broken;

        // Python keeps max_workers + 1 calls in the call queue; the rest wait here, cancellable.
        void pump() {
            for (;;) {
                pending_call call;
                {
                    std::lock_guard lock(mutex);
                    if (pending.empty() || inflight >= std::size_t(pool->processes()) + 1) return;
                    call = std::move(pending.front());
                    pending.pop_front();
                    ++inflight;
                }
                try {
                    call.start();
                } catch (...) {
                    // A broken pool: this call, and every later one, fails with its error.
                    {
                        std::lock_guard lock(mutex);
                        if (!broken) broken = std::current_exception();
                    }
                    call.fail(std::current_exception());
                    release();
                }
            }
        }
        void release() {
            std::lock_guard lock(mutex);
            if (inflight) --inflight;
            idle.notify_all();
        }
        void finished() {
            release();
            pump();
        }
    };

    static std::exception_ptr broken_error(const std::string& what) {
        return std::make_exception_ptr(BrokenProcessPool(
            "A process in the process pool was terminated abruptly while the future was running "
            "or pending: " + what));
    }
    static void executor_config(detail::pool_config& c) {
        c.break_on_worker_death = true;
        c.death_error = &broken_error;
        c.worker_name = "ProcessPoolWorker";
    }

    std::shared_ptr<shared> shared_;
};

// Python: concurrent.futures.as_completed(fs, timeout): the futures in the order they finish.
template <class T>
class as_completed {
public:
    explicit as_completed(std::vector<Future<T>> fs, std::optional<double> timeout = std::nullopt)
        : q_(std::make_shared<queue>()), deadline_(detail::deadline_after(timeout)),
          total_(fs.size()) {
        for (auto& f : fs)
            f.add_done_callback([q = q_](Future<T>& done) {
                {
                    std::lock_guard lock(q->mutex);
                    q->ready.push_back(done);
                }
                q->cv.notify_all();
            });
    }

    class iterator {
    public:
        using value_type = Future<T>;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(as_completed* owner) : owner_(owner) { ++*this; }
        const Future<T>& operator*() const { return *current_; }
        iterator& operator++() {
            current_ = owner_->next();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& i, std::default_sentinel_t) { return !i.current_; }

    private:
        as_completed* owner_ = nullptr;
        std::optional<Future<T>> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

private:
    struct queue {
        std::mutex mutex;
        std::condition_variable cv;
        std::deque<Future<T>> ready;
    };

    std::optional<Future<T>> next() {
        if (yielded_ == total_) return std::nullopt;
        std::unique_lock lock(q_->mutex);
        while (q_->ready.empty()) {
            if (deadline_ == detail::forever) {
                q_->cv.wait(lock);
            } else {
                auto left = detail::remaining_ns(deadline_);
                if (left == 0)
                    throw TimeoutError(std::to_string(total_ - yielded_) + " (of " +
                                       std::to_string(total_) + ") futures unfinished");
                q_->cv.wait_for(lock, std::chrono::nanoseconds(left));
            }
        }
        Future<T> f = q_->ready.front();
        q_->ready.pop_front();
        ++yielded_;
        return f;
    }

    std::shared_ptr<queue> q_;
    detail::deadline deadline_;
    std::size_t total_;
    std::size_t yielded_ = 0;
};

// Python: the named tuple concurrent.futures.wait returns.
template <class T>
struct DoneAndNotDoneFutures {
    std::vector<Future<T>> done;
    std::vector<Future<T>> not_done;
};

// Python: concurrent.futures.wait(fs, timeout, return_when)
template <class T>
DoneAndNotDoneFutures<T> wait(const std::vector<Future<T>>& fs,
                              std::optional<double> timeout = std::nullopt,
                              return_when when = ALL_COMPLETED) {
    auto deadline = detail::deadline_after(timeout);
    struct shared {
        std::mutex mutex;
        std::condition_variable cv;
        std::size_t finished = 0;
        bool failed = false;
    };
    auto s = std::make_shared<shared>();
    for (auto f : fs)
        f.add_done_callback([s](Future<T>& done) {
            bool failed = !done.cancelled() && done.exception() != nullptr;
            {
                std::lock_guard lock(s->mutex);
                ++s->finished;
                s->failed = s->failed || failed;
            }
            s->cv.notify_all();
        });
    std::unique_lock lock(s->mutex);
    auto satisfied = [&] {
        if (s->finished == fs.size()) return true;
        if (when == FIRST_COMPLETED) return s->finished > 0;
        if (when == FIRST_EXCEPTION) return s->failed;
        return false;
    };
    while (!satisfied()) {
        if (deadline == detail::forever) {
            s->cv.wait(lock);
        } else {
            auto left = detail::remaining_ns(deadline);
            if (left == 0) break;
            s->cv.wait_for(lock, std::chrono::nanoseconds(left));
        }
    }
    lock.unlock();
    DoneAndNotDoneFutures<T> out;
    for (const auto& f : fs) (f.done() ? out.done : out.not_done).push_back(f);
    return out;
}

}  // namespace multiprocessing::futures
