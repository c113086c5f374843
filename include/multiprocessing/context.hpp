// Python: multiprocessing.context. A context is a factory bound to one start method; the default
// start method is set at most once (set_start_method raises unless `force`), and a child inherits
// its parent's.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connection.hpp"
#include "errors.hpp"
#include "futures.hpp"
#include "managers.hpp"
#include "pool.hpp"
#include "popen/forkserver.hpp"
#include "process.hpp"
#include "queues.hpp"
#include "sharedctypes.hpp"
#include "synchronize.hpp"

namespace multiprocessing {

// Python: multiprocessing.get_all_start_methods()
inline std::vector<std::string> get_all_start_methods() { return {"fork", "spawn", "forkserver"}; }

namespace detail {
inline void check_start_method(const std::string& method) {
    for (const auto& m : get_all_start_methods())
        if (m == method) return;
    throw ValueError("cannot find context for '" + method +
                     "': the start methods are 'fork', 'spawn' and 'forkserver'");
}
}  // namespace detail

// Python: multiprocessing.set_start_method(method, force=False)
inline void set_start_method(std::optional<std::string> method, bool force = false) {
    if (method) detail::check_start_method(*method);
    auto& s = detail::start_method();
    std::lock_guard lock(s.mutex);
    if (s.method && !force) throw ValueError("context has already been set");
    s.method = std::move(method);
}

// Python: multiprocessing.get_start_method(allow_none=False). Without allow_none, asking fixes
// the default, as in Python: a later set_start_method then needs force.
inline std::optional<std::string> get_start_method(bool allow_none = false) {
    auto& s = detail::start_method();
    std::lock_guard lock(s.mutex);
    if (!s.method && !allow_none) s.method = "fork";
    return s.method;
}

// Python: a context (multiprocessing.get_context(method)): the library's factories, with every
// process they start using this context's start method.
class Context {
public:
    explicit Context(std::string method) : method_(std::move(method)) {
        detail::check_start_method(method_);
    }

    std::string get_start_method() const { return method_; }

    // Python: ctx.Process(target=f, args=(...)). The target must be able to travel (a function
    // pointer, a captureless lambda or a serializable function object, with serializable
    // arguments) whatever the method, so that switching a context to spawn cannot break it.
    template <class F, class... A>
    multiprocessing::Process Process(F&& f, A&&... args) const {
        return Process(ProcessOptions{}, std::forward<F>(f), std::forward<A>(args)...);
    }
    template <class F, class... A>
    multiprocessing::Process Process(ProcessOptions options, F&& f, A&&... args) const {
        static_assert(task_function<std::decay_t<F>>,
                      "ctx.Process: the target must be a function pointer, a captureless lambda "
                      "or a serializable function object: a spawned child runs in a fresh "
                      "process image, and a lambda's captures cannot be sent there (Python: "
                      "can't pickle a lambda). Pass the captured values as arguments.");
        static_assert((serializable<std::decay_t<A>> && ...),
                      "ctx.Process: every argument must be mp::serializable (or a Queue, Lock, "
                      "Value, Array, Pipe end or other handle of this library)");
        multiprocessing::Process p(std::move(options), std::forward<F>(f), std::forward<A>(args)...);
        p.start_method(method_);
        return p;
    }

    // Python: ctx.Pool(processes, ...)
    multiprocessing::Pool Pool(std::optional<int> processes = std::nullopt) const {
        return multiprocessing::Pool(PoolOptions{.processes = processes, .context = method_});
    }
    multiprocessing::Pool Pool(PoolOptions options) const {
        options.context = method_;
        return multiprocessing::Pool(std::move(options));
    }

    // Python: the rest of the context's factories; they are the same under every method.
    template <class T>
    multiprocessing::Queue<T> Queue(std::size_t maxsize = 0) const {
        return multiprocessing::Queue<T>(maxsize);
    }
    template <class T>
    multiprocessing::JoinableQueue<T> JoinableQueue(std::size_t maxsize = 0) const {
        return multiprocessing::JoinableQueue<T>(maxsize);
    }
    template <class T>
    multiprocessing::SimpleQueue<T> SimpleQueue() const {
        return multiprocessing::SimpleQueue<T>();
    }
    auto Pipe(bool duplex = true) const { return multiprocessing::Pipe(duplex); }
    multiprocessing::Lock Lock() const { return {}; }
    multiprocessing::RLock RLock() const { return {}; }
    multiprocessing::Semaphore Semaphore(int value = 1) const { return multiprocessing::Semaphore(value); }
    multiprocessing::BoundedSemaphore BoundedSemaphore(int value = 1) const {
        return multiprocessing::BoundedSemaphore(value);
    }
    multiprocessing::Event Event() const { return {}; }
    template <class... A>
    multiprocessing::Condition Condition(A&&... lock) const {
        return multiprocessing::Condition(std::forward<A>(lock)...);
    }
    template <class... A>
    multiprocessing::Barrier Barrier(A&&... args) const {
        return multiprocessing::Barrier(std::forward<A>(args)...);
    }
    template <class T, class... A>
    multiprocessing::Value<T> Value(A&&... args) const {
        return multiprocessing::Value<T>(std::forward<A>(args)...);
    }
    template <class T, class... A>
    multiprocessing::Array<T> Array(A&&... args) const {
        return multiprocessing::Array<T>(std::forward<A>(args)...);
    }
    template <class T, class... A>
    multiprocessing::RawValue<T> RawValue(A&&... args) const {
        return multiprocessing::RawValue<T>(std::forward<A>(args)...);
    }
    template <class T, class... A>
    multiprocessing::RawArray<T> RawArray(A&&... args) const {
        return multiprocessing::RawArray<T>(std::forward<A>(args)...);
    }
    // Python: ctx.Manager(). The server is forked under every method: it runs no user code
    // and holds no handle a fresh image would need, so fork's start-up is all it takes.
    SyncManager Manager() const { return multiprocessing::Manager(); }
    int cpu_count() const { return multiprocessing::cpu_count(); }

private:
    std::string method_;
};

// Python: multiprocessing.get_context(method=None): the default context without a method.
inline Context get_context(std::optional<std::string> method = std::nullopt) {
    return Context(method ? *method : *get_start_method());
}

}  // namespace multiprocessing
