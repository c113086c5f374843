"""Timing helpers shared by the Python counterparts of the benchmarks."""
import statistics
import time


def per_op(run, n, repetitions=5):
    """Median over `repetitions` runs of run(n), in seconds per operation."""
    run(max(1, n // 10))  # warm up: imports, first fork, caches
    samples = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        run(n)
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)
