"""Python's side of bench_connection.cpp: mp.Pipe ping-pong of a small int."""
import multiprocessing as mp
import os

from common import per_op


def _echo(conn):
    while True:
        x = conn.recv()
        if x < 0:
            return
        conn.send(x + 1)


def pipe_pingpong(pinned=False):
    ctx = mp.get_context("fork")

    def run(n):
        old = os.sched_getaffinity(0)
        if pinned:
            os.sched_setaffinity(0, {0})  # the child inherits it
        try:
            a, b = ctx.Pipe()
            p = ctx.Process(target=_echo, args=(b,))
            p.start()
            b.close()
            x = 0
            for _ in range(n):
                a.send(x)
                x = a.recv()
            a.send(-1)
            p.join()
        finally:
            os.sched_setaffinity(0, old)

    return per_op(run, n=5000)


ROWS = {
    "pipe_pingpong": {
        "title": "Pipe round trip of a small int",
        "python": {"mp.Pipe": pipe_pingpong},
    },
    "pipe_pingpong_cpu0": {
        "title": "Pipe round trip of a small int, both processes on CPU 0",
        "python": {"mp.Pipe": lambda: pipe_pingpong(pinned=True)},
    },
}
