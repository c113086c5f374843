// Start methods: start+join of a process per method, beside their floors (posix_spawn of this
// same binary for spawn, fork+waitpid for forkserver), and Pool startup per method.
#include <multiprocessing.hpp>

#include <cstdlib>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;

extern char** environ;

namespace {

// The spawn floor: this very executable, exec'd and leaving at once (before main) when told.
const bool exit_now = [] {
    if (std::getenv("MP_BENCH_EXIT_AT_ONCE")) ::_exit(0);
    return true;
}();

void empty() {}
int square(int x) { return x * x; }

void start_join(benchmark::State& state, const char* method) {
    auto ctx = mp::get_context(method);
    for (auto _ : state) {
        auto p = ctx.Process(empty);
        p.start();
        p.join();
        if (p.exitcode() != 0) state.SkipWithError("child failed");
    }
}

void posix_spawn_self(benchmark::State& state) {
    std::string exe = mp::detail::self_exe();
    std::vector<std::string> env_strings{"MP_BENCH_EXIT_AT_ONCE=1"};
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    char* argv[] = {exe.data(), nullptr};
    for (auto _ : state) {
        pid_t pid;
        if (::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()) != 0)
            state.SkipWithError("posix_spawn failed");
        int status;
        ::waitpid(pid, &status, 0);
    }
}

void fork_waitpid(benchmark::State& state) {
    for (auto _ : state) {
        pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        int status;
        ::waitpid(pid, &status, 0);
    }
}

void pool_startup(benchmark::State& state, const char* method) {
    auto ctx = mp::get_context(method);
    std::vector<int> two{1, 2};
    for (auto _ : state) {
        auto pool = ctx.Pool(2);
        benchmark::DoNotOptimize(pool.map(square, two));
    }
}

}  // namespace

BENCHMARK_CAPTURE(start_join, s, "spawn")->Name("process_start_spawn/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK(posix_spawn_self)->Name("process_start_spawn/floor:posix_spawn same binary")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(start_join, fs, "forkserver")->Name("process_start_forkserver/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK(fork_waitpid)->Name("process_start_forkserver/floor:fork+waitpid")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(pool_startup, f, "fork")->Name("pool_startup_fork/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(pool_startup, s, "spawn")->Name("pool_startup_spawn/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(pool_startup, fs, "forkserver")->Name("pool_startup_forkserver/mp")->UseRealTime()->MinTime(0.5);
