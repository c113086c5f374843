"""Python's side of bench_pool.cpp."""
import multiprocessing as mp
import time
import statistics

from common import per_op


def _square(x):
    return x * x


def _timed_pool(body, items, repetitions=5):
    """Median seconds per item of body(pool) with a Pool(2) made once, outside the timing."""
    with mp.get_context("fork").Pool(2) as pool:
        body(pool)  # warm up
        samples = []
        for _ in range(repetitions):
            t0 = time.perf_counter()
            body(pool)
            samples.append((time.perf_counter() - t0) / items)
    return statistics.median(samples)


def map_trivial():
    return _timed_pool(lambda p: p.map(_square, range(1_000_000)), 1_000_000)


def map_chunk1():
    return _timed_pool(lambda p: p.map(_square, range(10_000), chunksize=1), 10_000)


def apply_async():
    return _timed_pool(lambda p: [p.apply_async(_square, (3,)).get() for _ in range(500)], 500)


def imap_first():
    def body(p):
        for _ in range(50):
            it = p.imap_unordered(_square, range(1000))
            next(it)
            list(it)  # drain, so the next round starts on an idle pool
    return _timed_pool(body, 50)


ROWS = {
    "pool_map_trivial": {"title": "Pool(2).map(x*x) over 1,000,000 ints",
                         "python": {"Pool(2).map": map_trivial}},
    "pool_map_cpu": {"title": "Pool(2).map of ~10 us of arithmetic over 20,000 items", "python": {}},
    "pool_map_chunksize1": {"title": "Pool(2).map(x*x, chunksize=1) over 10,000 ints",
                            "python": {"Pool(2).map(chunksize=1)": map_chunk1}},
    "pool_apply_async": {"title": "apply_async(f, (3,)).get() round trip",
                         "python": {"apply_async().get()": apply_async}},
    "pool_imap_unordered_first": {"title": "imap_unordered over 1,000 items: first result",
                                  "python": {"next(imap_unordered())": imap_first}},
}
