"""Python's side of bench_process.cpp."""
import multiprocessing as mp

from common import per_op


def _empty():
    pass


def process_start(ctx_name="fork"):
    ctx = mp.get_context(ctx_name)

    def run(n):
        for _ in range(n):
            p = ctx.Process(target=_empty)
            p.start()
            p.join()

    return per_op(run, n=100 if ctx_name == "fork" else 20)


ROWS = {
    "process_start": {
        "title": "Process start+join, empty target (fork)",
        "python": {"mp.Process (fork)": process_start},
    },
}
