"""Python's side of bench_managers.cpp: a manager dict set + get, a manager Lock acquire + release."""
import multiprocessing as mp

from common import per_op

ctx = mp.get_context("fork")


def dict_set_get():
    with ctx.Manager() as manager:
        d = manager.dict()

        def run(n):
            for i in range(n):
                d[i & 63] = i
                d[i & 63]

        return per_op(run, n=5000)


def lock_acquire_release():
    with ctx.Manager() as manager:
        lock = manager.Lock()

        def run(n):
            for _ in range(n):
                lock.acquire()
                lock.release()

        return per_op(run, n=5000)


ROWS = {
    "manager_dict_set_get": {
        "title": "Manager dict: d[k] = v then d[k]",
        "python": {"manager.dict": dict_set_get},
    },
    "manager_lock_acquire_release": {
        "title": "Manager Lock: acquire then release",
        "python": {"manager.Lock": lock_acquire_release},
    },
}
