// Process start+join of an empty function: ours vs the raw fork()+waitpid() floor.
#include <multiprocessing.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;

namespace {

void empty() {}

void process_start_mp(benchmark::State& state) {
    for (auto _ : state) {
        mp::Process p(empty);
        p.start();
        p.join();
        if (p.exitcode() != 0) state.SkipWithError("child failed");
    }
}

void process_start_floor(benchmark::State& state) {
    for (auto _ : state) {
        pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (status != 0) state.SkipWithError("child failed");
    }
}

}  // namespace

BENCHMARK(process_start_mp)->Name("process_start/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK(process_start_floor)->Name("process_start/floor:fork+waitpid")->UseRealTime()->MinTime(0.5);
