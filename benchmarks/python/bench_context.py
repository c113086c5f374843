"""Python's side of bench_context.cpp: start methods."""
import multiprocessing as mp
import time
import statistics

from bench_process import process_start


def _square(x):
    return x * x


def pool_startup(method):
    ctx = mp.get_context(method)

    def once():
        with ctx.Pool(2) as pool:
            pool.map(_square, [1, 2])

    once()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        once()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


ROWS = {
    "process_start_spawn": {"title": "Process start+join, empty target (spawn)",
                            "python": {"mp.Process (spawn)": lambda: process_start("spawn")}},
    "process_start_forkserver": {"title": "Process start+join, empty target (forkserver)",
                                 "python": {"mp.Process (forkserver)": lambda: process_start("forkserver")}},
    "pool_startup_fork": {"title": "Pool(2) startup + map of 2 items + shutdown (fork)",
                          "python": {"Pool(2) (fork)": lambda: pool_startup("fork")}},
    "pool_startup_spawn": {"title": "Pool(2) startup + map of 2 items + shutdown (spawn)",
                           "python": {"Pool(2) (spawn)": lambda: pool_startup("spawn")}},
    "pool_startup_forkserver": {"title": "Pool(2) startup + map of 2 items + shutdown (forkserver)",
                                "python": {"Pool(2) (forkserver)": lambda: pool_startup("forkserver")}},
}
