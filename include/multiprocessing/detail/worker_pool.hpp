// The worker machinery under Pool and ProcessPoolExecutor (Python: pool.Pool's task, result and
// worker handlers, folded into one handler thread).
//
// Tasks go into one shared ring that every worker pulls from; results come back through another.
// A worker records the task it took in its slot in shared memory, inside the ring's critical
// section, so when a worker dies (SIGKILL, segfault, exit() in a task) the handler knows which
// task died with it: that task fails with an error naming the signal or exit code, a replacement
// worker starts, and the other tasks go on. CPython's Pool hangs forever here.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "../errors.hpp"
#include "../process.hpp"
#include "../serialization.hpp"
#include "code_ref.hpp"
#include "fd_table.hpp"
#include "posix/shm.hpp"
#include "resource_tracker.hpp"
#include "shared_ring.hpp"
#include "task.hpp"

namespace multiprocessing::detail {

// Every record starts with the job and the chunk it belongs to; job 0 is the pool's own.
struct record_head {
    std::uint64_t job;
    std::uint64_t chunk;
};

enum class result_status : std::uint64_t { ok, error, init_error, wake };

struct result_head {
    std::uint64_t job;
    std::uint64_t chunk;
    result_status status;
};

// A ring or a region as a worker's argument: under spawn and forkserver it travels as a
// descriptor (detail/fd_table.hpp); under fork the copy in memory is all there is.
struct ring_ref {
    std::shared_ptr<shared_ring> ring;
    template <class Archive>
    void serialize(Archive& ar) {
        serialize_fd(ar, "Pool queue", [&] { return ring->fd(); },
                     [&](posix::unique_fd f) { ring = std::make_shared<shared_ring>(std::move(f), 0); });
    }
};
struct region_ref {
    std::shared_ptr<posix::region> region;
    template <class Archive>
    void serialize(Archive& ar) {
        serialize_fd(ar, "Pool slot table", [&] { return region->fd.get(); },
                     [&](posix::unique_fd f) { region = std::make_shared<posix::region>(std::move(f)); });
    }
};

// A pool's initializer bound to its initargs, as every worker (replacements too) gets it: under
// fork the copy in memory; under spawn and forkserver written into each worker's start record, so
// that handles among the initargs travel as a Process's arguments do (detail/fd_table.hpp).
struct worker_init {
    virtual ~worker_init() = default;
    virtual void run() = 0;
    // A code_ref to the function that reads it back, then its parts.
    virtual void write(writer& w) const = 0;
};
using worker_init_reader = std::shared_ptr<worker_init> (*)(reader&);

template <class F, class Args>
struct bound_init final : worker_init {
    bound_init(F fn, Args a) : f(std::move(fn)), args(std::move(a)) {}
    void run() override {
        std::apply([&](auto&... xs) { std::invoke(f, xs...); }, args);
    }
    void write(writer& w) const override {
        w.write(to_code_ref(&read));
        write_callable(w, f);
        w.write(args);
    }
    static std::shared_ptr<worker_init> read(reader& r) {
        F fn = read_callable<F>(r);
        auto a = r.read<Args>();
        return std::make_shared<bound_init>(std::move(fn), std::move(a));
    }
    F f;
    Args args;
};

struct worker_init_ref {
    std::shared_ptr<worker_init> init;  // null: no initializer
    template <class Archive>
    void serialize(Archive& ar) {
        bool present = init != nullptr;
        ar(present);
        if constexpr (Archive::is_loading) {
            init = present ? from_code_ref_as<worker_init_reader>(ar.template read<code_ref>())(ar)
                           : nullptr;
        } else if (present) {
            init->write(ar);
        }
    }
};

// What a worker process is started with.
struct worker_args {
    ring_ref tasks, results;
    region_ref slots;
    std::uint64_t index = 0;
    int maxtasks = 0;
    worker_init_ref initializer;
};

inline void pool_worker_entry(worker_args args);

// Written by a worker inside the task ring's critical section: the task it runs.
struct worker_slot {
    std::atomic<std::uint64_t> job{0};
    std::atomic<std::uint64_t> chunk{0};
};

// What a job says about a chunk it was handed: whether that chunk was still due (a chunk can
// be reported twice when its worker died right after answering), and whether the job is over.
struct chunk_outcome {
    bool resolved = false;
    bool job_done = false;
};

// A job as the handler sees it. Calls come from the handler thread, or from terminate().
struct job_base {
    virtual ~job_base() = default;
    // A chunk's result (or, when !ok, its packed exception).
    virtual chunk_outcome on_result(std::uint64_t chunk, bool ok,
                                    std::span<const std::byte> payload) = 0;
    // A chunk that will never have a result.
    virtual chunk_outcome on_failure(std::uint64_t chunk, std::exception_ptr error) = 0;
    // Every chunk still due fails with `error`; returns how many there were.
    virtual std::size_t fail_all(std::exception_ptr error) = 0;
};

struct pool_config {
    int processes = 1;
    std::string start_method;                 // empty: the default one
    int maxtasksperchild = 0;                 // 0: workers live as long as the pool
    std::shared_ptr<worker_init> initializer;  // null, or run once in each worker
    bool break_on_worker_death = false;       // ProcessPoolExecutor's BrokenProcessPool
    std::string worker_name = "PoolWorker";  // after the method's prefix
    // Builds the error a task gets when its worker dies (Pool and executor word it differently).
    std::exception_ptr (*death_error)(const std::string& what) = nullptr;
};

class worker_pool {
public:
    enum class state { running, closed, stopping, terminated };

    explicit worker_pool(pool_config config)
        : config_(std::move(config)),
          tasks_(std::make_shared<shared_ring>()),
          results_(std::make_shared<shared_ring>()),
          slots_(std::make_shared<posix::region>(sizeof(worker_slot) * std::size_t(config_.processes))) {
        if (config_.processes < 1) throw ValueError("Number of processes must be at least 1");
        // One tracker for the pool and its workers: a segment a task creates and returns must
        // outlive the worker that made it (a worker's own tracker would unlink it on retiring).
        resource_tracker::instance().ensure_running();
        workers_.resize(std::size_t(config_.processes));
        // Workers are forked by the handler thread, which lives as long as they do: a daemonic
        // child's parent-death signal follows the thread that forked it.
        std::unique_lock lock(mutex_);
        handler_ = std::thread([this] { handler_main(); });
        changed_.wait(lock, [&] { return started_ || startup_error_; });
        if (startup_error_) {
            lock.unlock();
            handler_.join();
            std::rethrow_exception(startup_error_);
        }
    }

    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;
    ~worker_pool() { terminate(); }

    int processes() const noexcept { return config_.processes; }

    // Registers a job; its chunks may be put once this returns. Throws when the pool is not
    // running, or broken (an initializer failed, or a worker of an executor died).
    std::uint64_t add_job(std::shared_ptr<job_base> job) {
        std::lock_guard lock(mutex_);
        if (state_ != state::running) throw ValueError("Pool not running");
        if (broken_) std::rethrow_exception(broken_);
        std::uint64_t id = next_job_++;
        jobs_.emplace(id, std::move(job));
        return id;
    }

    // Forgets a job that needs nothing more (an imap iterator given up before its end).
    void release_job(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        jobs_.erase(id);
    }

    // Queues one task: the record head, then `pieces` back to back (copied once, into the ring).
    void put_task(std::uint64_t job, std::uint64_t chunk,
                  std::initializer_list<std::span<const std::byte>> pieces) {
        if (job != 0) {
            std::lock_guard lock(mutex_);
            if (state_ == state::stopping || state_ == state::terminated)
                throw ValueError("Pool not running");
            ++inflight_;
        }
        record_head head{job, chunk};
        std::size_t n = sizeof head;
        for (auto p : pieces) n += p.size();
        tasks_->put(
            n,
            [&](const ring_span& s) {
                s.write(0, &head, sizeof head);
                std::size_t at = sizeof head;
                for (auto p : pieces) {
                    s.write(at, p.data(), p.size());
                    at += p.size();
                }
            },
            forever);
    }

    // Python: Pool.close()
    void close() {
        std::lock_guard lock(mutex_);
        if (state_ == state::running) state_ = state::closed;
    }

    // Python: Pool.join(): waits for every task put so far, then stops the workers. (A lazy
    // imap that has not put all its input by then gets "Pool not running" for the rest.)
    void join() {
        {
            std::unique_lock lock(mutex_);
            if (state_ == state::running) throw ValueError("Pool is still running");
            if (state_ == state::closed) {
                changed_.wait(lock, [&] { return inflight_ == 0; });
                state_ = state::stopping;
            }
        }
        stop_workers();
        stop_handler();
    }

    // Python: Pool.terminate(): stops the workers now; every pending result fails.
    void terminate() noexcept {
        {
            std::lock_guard lock(mutex_);
            if (state_ == state::terminated) return;
            state_ = state::terminated;
        }
        // The handler first, so that it starts no replacement meanwhile.
        stop_handler();
        try {
            for (auto& w : workers_)
                if (w && w->exitcode() == std::nullopt) w->terminate();
            for (auto& w : workers_)
                if (w) w->join();
        } catch (...) {
        }
        fail_all_jobs(std::make_exception_ptr(ProcessError("Pool was terminated")));
    }

    // The error that broke the pool (an initializer failed, or an executor's worker died).
    std::exception_ptr broken() {
        std::lock_guard lock(mutex_);
        return broken_;
    }

    state current_state() {
        std::lock_guard lock(mutex_);
        return state_;
    }

    std::vector<int> worker_pids() {
        std::lock_guard lock(mutex_);
        std::vector<int> pids;
        for (auto& w : workers_)
            if (w && w->pid()) pids.push_back(*w->pid());
        return pids;
    }

    // Runs in a worker: take a task, run it, put its result; until told to stop or retired.
    struct channels {
        std::shared_ptr<shared_ring> tasks, results;
        std::shared_ptr<posix::region> slots;
        std::size_t index;
        int maxtasks;
        worker_init* initializer;
    };

    static void worker_main(const channels& ch) {
        auto* slot = static_cast<worker_slot*>(ch.slots->data()) + ch.index;
        std::vector<std::byte> task, out;
        if (ch.initializer) {
            try {
                ch.initializer->run();
            } catch (...) {
                put_result(*ch.results, {0, 0, result_status::init_error},
                           pack_exception(std::current_exception()));
                throw;  // reported on stderr, exit code 1, as Python's worker traceback
            }
        }
        for (int done = 0; ch.maxtasks == 0 || done < ch.maxtasks; ++done) {
            record_head head{};
            ch.tasks->get(
                [&](const ring_span& s) {
                    s.read(0, &head, sizeof head);
                    if (head.job != 0) {
                        slot->chunk.store(head.chunk, std::memory_order_relaxed);
                        slot->job.store(head.job, std::memory_order_release);
                    }
                    task.resize(s.size() - sizeof head);
                    s.read(sizeof head, task.data(), task.size());
                },
                forever);
            if (head.job == 0) return;
            result_head rh{head.job, head.chunk, result_status::ok};
            try {
                run_record(task, out);
            } catch (...) {
                rh.status = result_status::error;
                out = pack_exception(std::current_exception());
            }
            put_result(*ch.results, rh, out);
            slot->job.store(0, std::memory_order_release);
        }
    }

private:
    static void run_record(std::span<const std::byte> record, std::vector<std::byte>& out) {
        out.clear();
        reader r(record);
        auto run = from_code_ref_as<invoker>(r.read<code_ref>());
        writer w(out);
        run(r, w);
    }

    static void put_result(shared_ring& ring, result_head head, std::span<const std::byte> payload) {
        ring.put(
            sizeof head + payload.size(),
            [&](const ring_span& s) {
                s.write(0, &head, sizeof head);
                s.write(sizeof head, payload.data(), payload.size());
            },
            forever);
    }

    void start_worker(std::size_t i) {
        auto* slot = static_cast<worker_slot*>(slots_->data()) + i;
        slot->job.store(0);
        worker_args args{{tasks_}, {results_}, {slots_}, i, config_.maxtasksperchild,
                         {config_.initializer}};
        auto p = std::make_unique<Process>(ProcessOptions{.name = std::nullopt, .daemon = true},
                                           &pool_worker_entry, std::move(args));
        if (!config_.start_method.empty()) p->start_method(config_.start_method);
        p->name(fmt::format("{}{}-{}", method_prefix(p->start_method()), config_.worker_name,
                            ++worker_counter_));
        p->start();
        std::lock_guard lock(mutex_);
        workers_[i] = std::move(p);
    }

    void handler_main() {
        try {
            for (std::size_t i = 0; i < workers_.size(); ++i) start_worker(i);
        } catch (...) {
            std::lock_guard lock(mutex_);
            startup_error_ = std::current_exception();
            for (auto& w : workers_)
                if (w) w->kill();
            changed_.notify_all();
            return;
        }
        {
            std::lock_guard lock(mutex_);
            started_ = true;
            changed_.notify_all();
        }
        std::vector<std::byte> buf;
        auto take = [&](const ring_span& s) {
            buf.resize(s.size());
            s.read(0, buf.data(), s.size());
        };
        std::int64_t next_check = 0;
        while (!stop_handler_.load()) {
            bool got = results_->get(take, deadline_after(check_interval));
            if (got && handle_result(buf)) return;
            if (!got || posix::monotonic_ns() >= next_check) {
                check_workers(buf);
                next_check = posix::monotonic_ns() + check_interval_ns;
            }
        }
    }

    // Returns true when the handler is told to stop.
    bool handle_result(std::span<const std::byte> rec) {
        if (rec.size() < sizeof(result_head)) return false;  // cannot happen: we wrote it
        result_head h;
        std::memcpy(&h, rec.data(), sizeof h);
        auto payload = rec.subspan(sizeof h);
        if (h.job == 0) {
            if (h.status == result_status::wake) return stop_handler_.load();
            if (h.status == result_status::init_error) {
                std::exception_ptr e;
                try {
                    rethrow_packed_exception(payload);
                } catch (...) {
                    e = std::current_exception();
                }
                break_pool(e);
            }
            return false;
        }
        std::shared_ptr<job_base> job = find_job(h.job);
        if (!job) return false;  // a job that already failed as a whole
        chunk_outcome out;
        try {
            out = job->on_result(h.chunk, h.status == result_status::ok, payload);
        } catch (...) {
            // A callback that throws: Python's handler thread would die silently; we carry on.
            out = job->on_failure(h.chunk, std::current_exception());
        }
        account(h.job, out);
        return false;
    }

    void account(std::uint64_t id, chunk_outcome out) {
        std::lock_guard lock(mutex_);
        if (out.resolved) --inflight_;
        if (out.job_done) jobs_.erase(id);
        if (inflight_ == 0) changed_.notify_all();
    }

    void check_workers(std::vector<std::byte>& buf) {
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            Process* w;
            {
                std::lock_guard lock(mutex_);
                w = workers_[i].get();
            }
            if (!w || w->exitcode() == std::nullopt) continue;
            // It cannot put anything more: handle what it did put before judging its slot.
            while (results_->get([&](const ring_span& s) {
                buf.resize(s.size());
                s.read(0, buf.data(), s.size());
            }, deadline::poll_once())) {
                handle_result(buf);
            }
            auto* slot = static_cast<worker_slot*>(slots_->data()) + i;
            std::uint64_t job = slot->job.load(std::memory_order_acquire);
            std::uint64_t chunk = slot->chunk.load(std::memory_order_relaxed);
            int code = *w->exitcode();
            std::string what = fmt::format("{} (pid {}) {} while running a task", w->name(),
                                           w->pid().value_or(0), describe_exit(code));
            bool clean = job == 0 && code == 0;  // retired after maxtasksperchild
            auto error = config_.death_error ? config_.death_error(what)
                                             : std::make_exception_ptr(ProcessError("Pool worker " + what));
            bool restart;
            if (!clean && config_.break_on_worker_death) {
                // The executor's way: the whole pool is broken, every job fails with it.
                break_pool(error);
                restart = false;
            } else {
                if (job != 0)
                    if (auto j = find_job(job)) account(job, j->on_failure(chunk, error));
                std::lock_guard lock(mutex_);
                restart = (state_ == state::running || state_ == state::closed) && !broken_;
            }
            if (restart) {
                try {
                    start_worker(i);
                } catch (...) {
                    break_pool(std::current_exception());
                }
            } else {
                std::lock_guard lock(mutex_);
                retired_.push_back(std::move(workers_[i]));
            }
        }
    }

    // Python names workers after their start method: ForkPoolWorker-1, SpawnPoolWorker-2.
    static std::string method_prefix(const std::string& m) {
        if (m == "spawn") return "Spawn";
        if (m == "forkserver") return "Forkserver";
        return "Fork";
    }

    static std::string describe_exit(int code) {
        if (code < 0) {
            const char* abbrev = ::sigabbrev_np(-code);
            return fmt::format("was killed by signal {}{}", abbrev ? "SIG" : "", abbrev ? abbrev : std::to_string(-code));
        }
        return fmt::format("exited with code {}", code);
    }

    // Every job fails with `error`, and so will every new one.
    void break_pool(std::exception_ptr error) {
        {
            std::lock_guard lock(mutex_);
            if (!broken_) broken_ = error;
        }
        fail_all_jobs(error);
    }

    void fail_all_jobs(std::exception_ptr error) {
        std::unordered_map<std::uint64_t, std::shared_ptr<job_base>> jobs;
        {
            std::lock_guard lock(mutex_);
            jobs.swap(jobs_);
        }
        std::size_t resolved = 0;
        for (auto& [id, job] : jobs) resolved += job->fail_all(error);
        std::lock_guard lock(mutex_);
        inflight_ -= std::min(inflight_, resolved);
        changed_.notify_all();
    }

    std::shared_ptr<job_base> find_job(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        auto it = jobs_.find(id);
        return it == jobs_.end() ? nullptr : it->second;
    }

    void stop_workers() {
        std::size_t n;
        {
            std::lock_guard lock(mutex_);
            n = workers_.size();
        }
        for (std::size_t i = 0; i < n; ++i) put_task(0, 0, {});
        for (std::size_t i = 0; i < n; ++i) {
            Process* w;
            {
                std::lock_guard lock(mutex_);
                w = workers_[i].get();
            }
            if (w) w->join();
        }
    }

    void stop_handler() noexcept {
        if (!handler_.joinable()) return;
        stop_handler_.store(true);
        try {
            put_result(*results_, {0, 0, result_status::wake}, {});
        } catch (...) {
        }
        handler_.join();
    }

    static constexpr auto check_interval = std::chrono::milliseconds(100);
    static constexpr std::int64_t check_interval_ns = 100'000'000;

    pool_config config_;
    std::shared_ptr<shared_ring> tasks_, results_;
    std::shared_ptr<posix::region> slots_;

    std::mutex mutex_;
    std::condition_variable changed_;
    state state_ = state::running;
    bool started_ = false;
    std::exception_ptr startup_error_, broken_;
    std::vector<std::unique_ptr<Process>> workers_;
    std::vector<std::unique_ptr<Process>> retired_;
    std::unordered_map<std::uint64_t, std::shared_ptr<job_base>> jobs_;
    std::uint64_t next_job_ = 1;
    std::size_t inflight_ = 0;  // tasks put and not yet resolved
    int worker_counter_ = 0;
    std::atomic<bool> stop_handler_{false};
    std::thread handler_;
};

inline void pool_worker_entry(worker_args args) {
    worker_pool::worker_main({args.tasks.ring, args.results.ring, args.slots.region,
                              std::size_t(args.index), args.maxtasks, args.initializer.init.get()});
}

}  // namespace multiprocessing::detail
