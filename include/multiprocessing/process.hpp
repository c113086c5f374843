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
#include "detail/fd_table.hpp"
#include "detail/heap.hpp"
#include "detail/posix/futex.hpp"
#include "detail/posix/process.hpp"
#include "detail/resource_tracker.hpp"
#include "detail/runtime.hpp"
#include "detail/timeout.hpp"
#include "detail/task.hpp"
#include "errors.hpp"
#include "popen/fork.hpp"
#include "popen/spawn.hpp"
#include "serialization.hpp"

namespace multiprocessing {

class Process;
Process& current_process();

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
    std::string method;  // fork, spawn or forkserver; empty: the default one when started
    std::string name;
    std::string parent_name;
    std::vector<int> identity;
    bool daemon = false;
    int parent_pid = 0;
    int os_parent_pid = 0;  // when not parent_pid: a forkserver child's parent is the server
    std::unique_ptr<popen::Popen> popen;
    bool closed = false;
    Process* owner = nullptr;
    std::string authkey;  // Python: Process.authkey
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

// Python: the main process's authkey, 32 random bytes from os.urandom. Made while the program
// starts, before anything can fork, so that every child inherits the same key (a key made
// lazily in a forked child would be that child's own).
inline const std::string& main_authkey() {
    static const std::string key = [] {
        std::string k(32, '\0');
        posix::random_bytes(k.data(), k.size());
        return k;
    }();
    return key;
}
inline const bool main_authkey_made = [] {
    try {
        (void)main_authkey();
    } catch (...) {
        // No getrandom (a seccomp filter): made, or reported, on first use instead.
    }
    return true;
}();

// Python: util._exit_function(): terminate the daemonic children, then join all of them.
inline void exit_function() noexcept;

// The start method of Process objects that were not given one (Python: the default context).
struct start_method_state {
    std::mutex mutex;
    std::optional<std::string> method;
};
inline start_method_state& start_method() {
    static start_method_state s;
    return s;
}
inline std::string default_start_method() {
    auto& s = start_method();
    std::lock_guard lock(s.mutex);
    return s.method.value_or("fork");
}

// What a spawned or forkserver child is told: who it is, and what to run.
struct start_record {
    std::string method;
    std::string name;
    std::vector<int> identity;
    bool daemon = false;
    int parent_pid = 0;
    std::string parent_name;
    std::vector<std::byte> target;  // a task record (detail/task.hpp)
    std::int64_t resource_tracker = -1;  // index of the parent's tracker in the descriptors, or -1
    std::string authkey;  // the child's current_process().authkey(), as Python's preparation data
};

[[noreturn]] inline void run_start_record(std::span<const std::byte> record, std::vector<int> fds,
                                          int ack_fd);
namespace popen_factory {
// Set by popen/forkserver.hpp when it is included: launches through the fork server.
inline std::unique_ptr<popen::Popen> (*forkserver)(std::span<const std::byte>,
                                                   const std::vector<int>&) = nullptr;
}  // namespace popen_factory

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
        using Impl = target_impl<std::decay_t<F>, std::decay_t<Args>...>;
        auto impl = std::make_unique<Impl>(std::forward<F>(f), std::forward<Args>(args)...);
        // A target that can travel (a task function and serializable arguments) can also be
        // started by spawn and forkserver; anything else runs under fork only.
        if constexpr (shippable<std::decay_t<F>, std::decay_t<Args>...>) {
            write_target_ = [p = impl.get()](detail::writer& w) {
                using Arg = std::tuple<std::decay_t<Args>...>;
                detail::write_task_head<std::decay_t<F>, Arg, true>(w, p->f);
                std::vector<Arg> one{p->args};
                w.write(one);
            };
        }
        target_ = std::move(impl);
    }

    // A target and arguments that spawn and forkserver can send to a fresh process.
    template <class F, class... Args>
    static constexpr bool shippable = task_function<F> && (serializable<Args> && ...);

    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    Process(Process&& o) noexcept
        : state_(std::move(o.state_)), target_(std::move(o.target_)),
          write_target_(std::move(o.write_target_)) {
        adopt_state();
    }
    Process& operator=(Process&& o) noexcept {
        if (this != &o) {
            release_state();
            state_ = std::move(o.state_);
            target_ = std::move(o.target_);
            write_target_ = std::move(o.write_target_);
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
        state_->popen = launch();
        // Python: del self._target, self._args: the child has them now, and the parent keeps no
        // reference to them (a manager's object goes when the last proxy of it does).
        target_.reset();
        write_target_ = nullptr;
        std::lock_guard lock(g.mutex);
        g.children.push_back(state_);
    }

    // The start method this process uses: its context's, or the default one.
    std::string start_method() const {
        check_closed();
        return state_->method.empty() ? detail::default_start_method() : state_->method;
    }
    // Binds the process to a start method (what ctx.Process(...) does).
    void start_method(std::string method) {
        check_closed();
        if (state_->popen) throw ValueError("process has already started");
        state_->method = std::move(method);
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
    // Closing the current process or the main one does nothing, as in Python.
    void close() {
        if (state_->closed || state_->kind != detail::process_kind::child ||
            this == detail::globals().current)
            return;
        if (state_->popen) {
            auto rc = state_->popen->poll();
            if (!rc)
                throw ValueError(
                    "Cannot close a process while it is still running. You should first call "
                    "join() or terminate().");
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
        check_closed();
        if (state_->kind != detail::process_kind::child || !state_->popen) return std::nullopt;
        return state_->popen->poll();
    }

    // Python: Process.sentinel: a descriptor that becomes readable when the process ends.
    int sentinel() const {
        check_closed();
        if (!state_->popen) throw ValueError("process not started");
        return state_->popen->sentinel();
    }

    // Python: Process.authkey: the key of the manager connections and Listeners this process
    // makes by default, inherited by the children it starts afterwards (set it before start()).
    // A copy, as another thread (a Pool's handler) may read it while this one sets it.
    std::string authkey() const {
        std::lock_guard lock(detail::globals().mutex);
        return state_->authkey;
    }
    void authkey(std::string key) {
        std::lock_guard lock(detail::globals().mutex);
        state_->authkey = std::move(key);
    }

    // Python: Process.name (get and set).
    const std::string& name() const noexcept { return state_->name; }
    void name(std::string n) { state_->name = std::move(n); }

    // Python: Process.daemon (get and set; set only before start()).
    bool daemon() const noexcept { return state_->daemon; }
    void daemon(bool d) {
        check_closed();
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
        if (kind == detail::process_kind::main) state_->authkey = detail::main_authkey();
    }

    void init(ProcessOptions options) {
        auto& g = detail::globals();
        {
            std::lock_guard lock(g.mutex);
            state_->identity = g.current ? g.current->state_->identity : std::vector<int>{};
            state_->identity.push_back(++g.counter);
        }
        state_->parent_pid = detail::self_pid();
        state_->authkey = current_process().authkey();
        state_->parent_name = g.current ? g.current->name() : std::string("MainProcess");
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

    bool join_until(detail::deadline deadline) {
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
            g.parent.reset(new Process(special_tag{}, detail::process_kind::parent,
                                       state_->parent_name, parent_pid));
            g.parent->state_->authkey = state_->authkey;
            g.current = this;
            // Beyond Python: a daemonic child dies with its parent, even one killed by SIGKILL.
            int os_parent = state_->os_parent_pid ? state_->os_parent_pid : parent_pid;
            if (state_->daemon && !detail::posix::die_with_parent(os_parent)) return 1;
            // Terminated (a Pool's workers are, at its end), it still frees its shared slots.
            detail::posix::before_dying_of_sigterm(&detail::heap::release_all_on_terminate);
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
        // The slots of shared objects this child holds are free for others to reuse.
        detail::heap::release_all();
        std::fflush(nullptr);
        return code;
    }

    void report_exception(const std::string& type, const char* what) noexcept {
        std::fflush(stdout);
        std::fprintf(stderr, "Process %s:\n%s: %s\n", state_->name.c_str(), type.c_str(), what);
        std::fflush(stderr);
    }

    // Asks the start method's Popen for the child.
    std::unique_ptr<popen::Popen> launch() {
        std::string method = start_method();
        if (method == "fork")
            return std::make_unique<popen::PopenFork>([this]() noexcept { return bootstrap(); });
        if (method != "spawn" && method != "forkserver")
            throw ValueError("cannot find context for '" + method + "'");
        // Fork-bomb guard: a spawned image whose bootstrap did not run must not spawn again.
        if (std::getenv(detail::spawn_env))
            throw ProcessError(
                "multiprocessing: this process was spawned by multiprocessing, but its bootstrap "
                "did not run, so it is running main() again; refusing to start more processes");
        if (!write_target_)
            throw ValueError(
                "this Process cannot be started with '" + method +
                "': its target must be a function pointer, a captureless lambda or a serializable "
                "function object, and its arguments serializable (a subclass overriding run() "
                "or a lambda with captures runs under 'fork' only)");
        detail::fd_table table;
        std::vector<std::byte> record;
        {
            detail::fd_table_scope scope(table);
            std::vector<std::byte> target;
            detail::writer w(target);
            write_target_(w);
            detail::start_record r{.method = method,
                                   .name = state_->name,
                                   .identity = state_->identity,
                                   .daemon = state_->daemon,
                                   .parent_pid = state_->parent_pid,
                                   .parent_name = state_->parent_name,
                                   .target = std::move(target),
                                   .resource_tracker = -1,
                                   .authkey = authkey()};
            // The child registers the segments it creates with our tracker, if one runs.
            if (int fd = detail::resource_tracker::instance().fd(); fd >= 0)
                r.resource_tracker = detail::export_fd(fd, "resource tracker");
            record = serialize(r);
        }
        if (method == "spawn") return std::make_unique<popen::PopenSpawn>(record, table.fds);
        if (!detail::popen_factory::forkserver)
            throw ValueError("the 'forkserver' start method needs <multiprocessing/context.hpp>");
        return detail::popen_factory::forkserver(record, table.fds);
    }

    // The target of a process started from a start record.
    struct record_target final : target_base {
        record_target(std::vector<std::byte> t, std::vector<int> f)
            : target(std::move(t)), fds{std::move(f), {}, {}} {}
        void invoke() override {
            detail::reader r(target);
            auto run = detail::from_code_ref_as<detail::invoker>(r.read<detail::code_ref>());
            detail::fd_table_scope scope(fds);
            std::vector<std::byte> out;
            detail::writer w(out);
            run(r, w);
        }
        std::vector<std::byte> target;
        detail::fd_table fds;
    };

    friend void detail::run_start_record(std::span<const std::byte>, std::vector<int>, int);

    std::shared_ptr<detail::process_state> state_;
    std::unique_ptr<target_base> target_;
    std::function<void(detail::writer&)> write_target_;
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

namespace detail {

// A spawned or forkserver child: becomes the Process its parent described, runs it, exits.
[[noreturn]] inline void run_start_record(std::span<const std::byte> bytes, std::vector<int> fds,
                                          int ack_fd) {
    auto rec = deserialize<start_record>(bytes);
    if (rec.resource_tracker >= 0 && std::size_t(rec.resource_tracker) < fds.size())
        resource_tracker::instance().adopt(fds[std::size_t(rec.resource_tracker)]);
    {
        auto& s = start_method();
        std::lock_guard lock(s.mutex);
        s.method = rec.method;  // a child inherits its parent's start method, as in Python
    }
    if (ack_fd >= 0) {
        char ok = 'R';
        iovec iov{&ok, 1};
        posix::write_all(ack_fd, &iov, 1);
        ::close(ack_fd);
    }
    auto* p = new Process(Process::special_tag{}, process_kind::child, rec.name, rec.parent_pid);
    p->state_->identity = std::move(rec.identity);
    p->state_->daemon = rec.daemon;
    p->state_->parent_name = std::move(rec.parent_name);
    p->state_->method = rec.method;
    p->state_->authkey = std::move(rec.authkey);
    if (rec.method == "forkserver") p->state_->os_parent_pid = int(::getppid());
    p->target_ = std::make_unique<Process::record_target>(std::move(rec.target), std::move(fds));
    ::_exit(p->bootstrap());
}

// The library's entry point in a fresh image (spawn, or a forkserver's server): runs during
// static initialization, before main(), so a spawned child never runs the user's main again.
inline bool spawn_entry() {
    const char* fd_text = std::getenv(spawn_env);
    if (!fd_text || std::getenv(skip_bootstrap_env)) return false;
    int fd = std::atoi(fd_text);
    ::unsetenv(spawn_env);
    try {
        auto landed = deserialize<std::vector<int>>(read_frame(fd));
        // Inherited without close-on-exec: set it, so nothing leaks into what this child runs.
        for (int d : landed) ::fcntl(d, F_SETFD, FD_CLOEXEC);
        auto record = read_frame(fd);
        run_start_record(record, std::move(landed), fd);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "multiprocessing: a spawned child could not start: %s\n", e.what());
        ::_exit(1);
    }
}

inline const bool spawn_entry_ran = spawn_entry();

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
