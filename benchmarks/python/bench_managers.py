"""Python's side of bench_managers.cpp: a manager dict set + get, a manager Lock acquire + release,
making and dropping a manager dict."""
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


def dict_create_drop():
    with ctx.Manager() as manager:

        def run(n):
            for _ in range(n):
                d = manager.dict()
                del d

        return per_op(run, n=2000)


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
    "manager_dict_create_drop": {
        "title": "Manager dict: made, then its last proxy dropped",
        "python": {"manager.dict": dict_create_drop},
    },
    "manager_lock_acquire_release": {
        "title": "Manager Lock: acquire then release",
        "python": {"manager.Lock": lock_acquire_release},
    },
}
