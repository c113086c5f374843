// Python: multiprocessing.process. Process is the user-facing, thread-like object; it never
// creates an OS process itself but asks a Popen (popen/) for one.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "detail/demangle.hpp"
#include "detail/posix/futex.hpp"
#include "detail/posix/process.hpp"
#include "detail/runtime.hpp"
#include "detail/timeout.hpp"
#include "errors.hpp"
#include "popen/fork.hpp"

namespace multiprocessing {

class Process;

// Python: the keyword arguments name= and daemon= of Process(...).
// (Default member initializers keep -Wextra quiet about omitted designated fields.)
struct ProcessOptions {
    std::optional<std::string> name = std::nullopt;
    std::optional<bool> daemon = std::nullopt;
};

namespace detail {

enum class process_kind : std::uint8_t { child, main, parent };

// What a Process object refers to; shared with the registry of children, so a child whose
// Process object was destroyed while it ran is still joined at exit, as in Python.
struct process_state {
    process_kind kind = process_kind::child;
    std::string name;
    std::vector<int> identity;
    bool daemon = false;
    int parent_pid = 0;
    std::unique_ptr<popen::Popen> popen;
    std::optional<int> exitcode_after_close;
    bool closed = false;
    Process* owner = nullptr;
};

struct process_globals {
    std::mutex mutex;
    std::vector<std::shared_ptr<process_state>> children;  // started, not yet known to be reaped
    int counter = 0;                                        // Python: process._process_counter
    Process* current = nullptr;                             // nullptr: the main process
    std::unique_ptr<Process> parent;                        // set in a child
    bool exit_handler_registered = false;
};

inline process_globals& globals() {
    static process_globals g;
    return g;
}

// Python: util._exit_function(): terminate the daemonic children, then join all of them.
inline void exit_function() noexcept;

}  // namespace detail

// Python: multiprocessing.Process
class Process {
public:
    // A process with no target, for subclasses that override run().
    Process() : Process(ProcessOptions{}) {}
    explicit Process(ProcessOptions options) : state_(std::make_shared<detail::process_state>()) {
        init(std::move(options));
    }

    // Python: Process(target=f, args=(a, b)); under fork any callable, captures included.
    template <class F, class... Args>
        requires(!std::same_as<std::remove_cvref_t<F>, ProcessOptions>) &&
                std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    explicit Process(F&& f, Args&&... args) : Process(ProcessOptions{}, std::forward<F>(f),
                                                      std::forward<Args>(args)...) {}

    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    Process(ProcessOptions options, F&& f, Args&&... args) : Process(std::move(options)) {
        target_ = std::make_unique<target_impl<std::decay_t<F>, std::decay_t<Args>...>>(
            std::forward<F>(f), std::forward<Args>(args)...);
    }

    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    Process(Process&& o) noexcept : state_(std::move(o.state_)), target_(std::move(o.target_)) {
        adopt_state();
    }
    Process& operator=(Process&& o) noexcept {
        if (this != &o) {
            release_state();
            state_ = std::move(o.state_);
            target_ = std::move(o.target_);
            adopt_state();
        }
        return *this;
    }
    // A running child outlives its Process object, as in Python: it is joined (or, if daemonic,
    // terminated) when the program exits.
    virtual ~Process() { release_state(); }

    // Python: Process.run(); runs in the child. Override it, or pass a target.
    virtual void run() {
        if (target_) target_->invoke();
    }

    // Python: Process.start()
    void start() {
        check_closed();
        auto& g = detail::globals();
        if (state_->kind != detail::process_kind::child)
            throw ValueError("can only start a process object created by current process");
        if (state_->popen) throw ValueError("cannot start a process twice");
        if (state_->parent_pid != detail::self_pid())
            throw ValueError("can only start a process object created by current process");
        if (current_is_daemon())
            throw ValueError("daemonic processes are not allowed to have children");
        cleanup();
        {
            std::lock_guard lock(g.mutex);
            if (!g.exit_handler_registered) {
                std::atexit(&detail::exit_function);
                g.exit_handler_registered = true;
            }
        }
        state_->popen = std::make_unique<popen::PopenFork>([this]() noexcept { return bootstrap(); });
        std::lock_guard lock(g.mutex);
        g.children.push_back(state_);
    }

    // Python: Process.join(); returns once the process has ended.
    void join() { join_until(detail::forever); }
    // Python: Process.join(timeout); returns false when the process still runs.
    template <detail::timeout_like Timeout>
    bool join(Timeout timeout) {
        return join_until(detail::deadline_after(timeout));
    }

    // Python: Process.is_alive()
    bool is_alive() {
        check_closed();
        switch (state_->kind) {
            case detail::process_kind::main: return true;
            case detail::process_kind::parent:
                return !detail::posix::process_gone(state_->parent_pid);
            case detail::process_kind::child: break;
        }
        if (this == detail::globals().current) return true;
        if (state_->parent_pid != detail::self_pid())
            throw ValueError("can only test a child process");
        if (!state_->popen) return false;
        if (state_->popen->poll()) {
            forget_child();
            return false;
        }
        return true;
    }

    // Python: Process.terminate() (SIGTERM) and Process.kill() (SIGKILL).
    void terminate() { send_signal(SIGTERM); }
    void kill() { send_signal(SIGKILL); }

    // Python: Process.close(): releases the resources; the object is unusable afterwards.
    void close() {
        if (state_->closed) return;
        if (state_->popen) {
            auto rc = state_->popen->poll();
            if (!rc)
                throw ValueError(
                    "Cannot close a process while it is still running. You should first call "
                    "join() or terminate().");
            state_->exitcode_after_close = rc;
            state_->popen.reset();
            forget_child();
        }
        state_->closed = true;
    }

    // Python: Process.pid / Process.ident; nullopt before start().
    std::optional<int> pid() const {
        check_closed();
        switch (state_->kind) {
            case detail::process_kind::main: return detail::self_pid();
            case detail::process_kind::parent: return state_->parent_pid;
            case detail::process_kind::child: break;
        }
        if (this == detail::globals().current) return detail::self_pid();
        if (!state_->popen) return std::nullopt;
        return state_->popen->pid();
    }
    std::optional<int> ident() const { return pid(); }

    // Python: Process.exitcode: nullopt while running (or before start), 0 on return, the code
    // given to exit(), -N when killed by signal N, 1 when run() threw.
    std::optional<int> exitcode() const {
        if (state_->closed) return state_->exitcode_after_close;
        if (state_->kind != detail::process_kind::child || !state_->popen) return std::nullopt;
        return state_->popen->poll();
    }

    // Python: Process.sentinel: a descriptor that becomes readable when the process ends.
    int sentinel() const {
        check_closed();
        if (!state_->popen) throw ValueError("process not started");
        return state_->popen->sentinel();
    }

    // Python: Process.name (get and set).
    const std::string& name() const noexcept { return state_->name; }
    void name(std::string n) { state_->name = std::move(n); }

    // Python: Process.daemon (get and set; set only before start()).
    bool daemon() const noexcept { return state_->daemon; }
    void daemon(bool d) {
        if (state_->popen) throw ValueError("process has already started");
        state_->daemon = d;
    }

private:
    struct target_base {
        virtual ~target_base() = default;
        virtual void invoke() = 0;
    };
    template <class F, class... Args>
    struct target_impl final : target_base {
        template <class G, class... A>
        explicit target_impl(G&& g, A&&... a) : f(std::forward<G>(g)), args(std::forward<A>(a)...) {}
        void invoke() override { std::apply(f, args); }
        F f;
        std::tuple<Args...> args;
    };

    friend class ProcessFormatterAccess;
    friend void detail::exit_function() noexcept;
    friend Process& current_process();
    friend Process* parent_process();
    friend std::vector<Process*> active_children();

    struct special_tag {};
    Process(special_tag, detail::process_kind kind, std::string name, int pid)
        : state_(std::make_shared<detail::process_state>()) {
        state_->kind = kind;
        state_->name = std::move(name);
        state_->parent_pid = pid;
        state_->owner = this;
    }

    void init(ProcessOptions options) {
        auto& g = detail::globals();
        {
            std::lock_guard lock(g.mutex);
            state_->identity = g.current ? g.current->state_->identity : std::vector<int>{};
            state_->identity.push_back(++g.counter);
        }
        state_->parent_pid = detail::self_pid();
        state_->daemon = options.daemon ? *options.daemon : current_is_daemon();
        if (options.name) {
            state_->name = std::move(*options.name);
        } else {
            state_->name = fmt::format("Process-{}", fmt::join(state_->identity, ":"));
        }
        state_->owner = this;
    }

    void adopt_state() noexcept {
        if (state_) state_->owner = this;
    }
    void release_state() noexcept {
        if (state_ && state_->owner == this) state_->owner = nullptr;
    }

    static bool current_is_daemon() {
        auto* cur = detail::globals().current;
        return cur && cur->state_->daemon;
    }

    void check_closed() const {
        if (state_->closed) throw ValueError("process object is closed");
    }

    bool join_until(std::int64_t deadline) {
        check_closed();
        if (state_->kind == detail::process_kind::parent) {
            // Python: _ParentProcess.join() waits on the parent's sentinel.
            auto fd = detail::posix::open_pidfd_or_gone(state_->parent_pid);
            return !fd || detail::posix::wait_readable(fd.get(), deadline);
        }
        if (state_->kind != detail::process_kind::child || state_->parent_pid != detail::self_pid())
            throw ValueError("can only join a child process");
        if (!state_->popen) throw ValueError("can only join a started process");
        if (!state_->popen->wait(deadline)) return false;
        forget_child();
        return true;
    }

    void send_signal(int sig) {
        check_closed();
        if (state_->kind != detail::process_kind::child || !state_->popen)
            throw ValueError("can only signal a started child process");
        state_->popen->send_signal(sig);
    }

    void forget_child() {
        auto& g = detail::globals();
        std::lock_guard lock(g.mutex);
        std::erase(g.children, state_);
    }

    // Python: process._cleanup(): forget the children that have ended (and reap them).
    static void cleanup() {
        auto& g = detail::globals();
        std::lock_guard lock(g.mutex);
        std::erase_if(g.children, [](const auto& s) { return s->popen && s->popen->poll(); });
    }

    // The child's side of start(). Nothing here may throw out: everything becomes an exit code.
    int bootstrap() noexcept {
        int code = 1;
        try {
            auto& g = detail::globals();
            int parent_pid = state_->parent_pid;
            // This process's view: its own children (none yet), its identity, its parent.
            // Another thread of the parent may have held the lock at fork time.
            ::new (&g.mutex) std::mutex;
            g.children.clear();
            g.counter = 0;
            std::string parent_name = g.current ? g.current->name() : std::string("MainProcess");
            g.parent.reset(new Process(special_tag{}, detail::process_kind::parent,
                                       std::move(parent_name), parent_pid));
            g.current = this;
            // Beyond Python: a daemonic child dies with its parent, even one killed by SIGKILL.
            if (state_->daemon && !detail::posix::die_with_parent(parent_pid)) return 1;
            // Line-buffered, so that children's lines interleave as they are printed.
            std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
            try {
                run();
                code = 0;
            } catch (const std::exception& e) {
                report_exception(detail::demangle(typeid(e)), e.what());
            } catch (...) {
                report_exception("unknown exception", "");
            }
            detail::exit_function();
        } catch (...) {
            code = 1;
        }
        std::fflush(nullptr);
        return code;
    }

    void report_exception(const std::string& type, const char* what) noexcept {
        std::fflush(stdout);
        std::fprintf(stderr, "Process %s:\n%s: %s\n", state_->name.c_str(), type.c_str(), what);
        std::fflush(stderr);
    }

    std::shared_ptr<detail::process_state> state_;
    std::unique_ptr<target_base> target_;
};

// Python: multiprocessing.current_process()
inline Process& current_process() {
    auto& g = detail::globals();
    if (g.current) return *g.current;
    static Process main_process(Process::special_tag{}, detail::process_kind::main, "MainProcess",
                                0);
    return main_process;
}

// Python: multiprocessing.parent_process(); nullptr (None) in the main process.
inline Process* parent_process() { return detail::globals().parent.get(); }

// Python: multiprocessing.active_children(): the live children of this process, reaping those
// that ended. Children whose Process object was destroyed are not listed (there is nothing to
// point to) but are still reaped here and joined at exit.
inline std::vector<Process*> active_children() {
    Process::cleanup();
    auto& g = detail::globals();
    std::lock_guard lock(g.mutex);
    std::vector<Process*> out;
    for (auto& s : g.children)
        if (s->owner) out.push_back(s->owner);
    return out;
}

// Python: multiprocessing.cpu_count(): the CPUs of the machine.
inline int cpu_count() noexcept { return detail::posix::online_cpus(); }

// Python 3.13: os.process_cpu_count(): the CPUs this process may run on.
inline int process_cpu_count() noexcept { return detail::posix::affinity_cpus(); }

namespace detail {

inline void exit_function() noexcept {
    auto& g = globals();
    std::vector<std::shared_ptr<process_state>> children;
    {
        std::lock_guard lock(g.mutex);
        children = g.children;
    }
    const int me = self_pid();
    try {
        for (auto& s : children)
            if (s->daemon && s->parent_pid == me && s->popen) s->popen->send_signal(SIGTERM);
        for (auto& s : children)
            if (s->parent_pid == me && s->popen) s->popen->wait(forever);
    } catch (...) {
        // At exit there is no one left to report to.
    }
    std::lock_guard lock(g.mutex);
    g.children.clear();
}

}  // namespace detail

class ProcessFormatterAccess {
public:
    static std::string repr(const Process& p) {
        using detail::process_kind;
        auto& s = *p.state_;
        std::string cls = s.kind == process_kind::main     ? "_MainProcess"
                          : s.kind == process_kind::parent ? "_ParentProcess"
                                                           : detail::short_type_name(typeid(p));
        std::optional<int> exitcode;
        const char* status;
        if (&p == &current_process()) {
            status = "started";
        } else if (s.closed) {
            status = "closed";
        } else if (s.kind != process_kind::child || s.parent_pid != detail::self_pid()) {
            status = "unknown";
        } else if (!s.popen) {
            status = "initial";
        } else {
            exitcode = s.popen->poll();
            status = exitcode ? "stopped" : "started";
        }
        std::string out = fmt::format("<{} name='{}'", cls, s.name);
        if (s.popen || &p == detail::globals().current) out += fmt::format(" pid={}", *p.pid());
        if (s.kind == process_kind::main)
            out += " parent=None";
        else if (s.kind == process_kind::child)
            out += fmt::format(" parent={}", s.parent_pid);
        out += fmt::format(" {}", status);
        if (exitcode) out += " exitcode=" + exitcode_name(*exitcode);
        if (s.daemon) out += " daemon";
        return out + ">";
    }

private:
    // Python's _exitcode_to_name: -15 prints as -SIGTERM.
    static std::string exitcode_name(int code) {
        if (code < 0) {
            if (const char* abbrev = ::sigabbrev_np(-code)) return fmt::format("-SIG{}", abbrev);
        }
        return std::to_string(code);
    }
};

}  // namespace multiprocessing

// Prints what Python's repr(process) prints: <Process name='Process-1' pid=12 parent=10 started>
template <std::derived_from<multiprocessing::Process> P>
struct fmt::formatter<P> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const P& p, Context& ctx) const {
        return fmt::formatter<std::string_view>::format(
            multiprocessing::ProcessFormatterAccess::repr(p), ctx);
    }
};
