"""Python's side of bench_queues.cpp: mp.Queue and mp.SimpleQueue throughput between processes,
8-byte ints one producer to one consumer and four to four, and 1 MiB bytes items."""
import multiprocessing as mp

from common import per_op

CTX = mp.get_context("fork")


def _produce(q, n):
    for i in range(n):
        q.put(i)


def _consume(q, n):
    s = 0
    for _ in range(n):
        s += q.get()


def _produce_big(q, n):
    item = b"\x01" * (1 << 20)
    for _ in range(n):
        q.put(item)


def one_to_one(make_queue):
    def run(n):
        q = make_queue()
        p = CTX.Process(target=_produce, args=(q, n))
        p.start()
        s = 0
        for _ in range(n):
            s += q.get()
        p.join()

    return per_op(run, n=50_000)


def four_to_four():
    def run(n):
        q = CTX.Queue()
        per = n // 4
        ps = [CTX.Process(target=_produce, args=(q, per)) for _ in range(4)]
        ps += [CTX.Process(target=_consume, args=(q, per)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()

    return per_op(run, n=40_000)


def big_items():
    def run(n):
        q = CTX.Queue()
        p = CTX.Process(target=_produce_big, args=(q, n))
        p.start()
        total = 0
        for _ in range(n):
            total += len(q.get())
        p.join()

    return per_op(run, n=200)


ROWS = {
    "queue_1p1c": {
        "title": "Queue, 1 producer to 1 consumer, 8-byte items",
        "python": {"mp.Queue": lambda: one_to_one(CTX.Queue),
                   "mp.SimpleQueue": lambda: one_to_one(CTX.SimpleQueue)},
    },
    "queue_4p4c": {
        "title": "Queue, 4 producers to 4 consumers, 8-byte items",
        "python": {"mp.Queue": four_to_four},
    },
    "queue_1mib": {
        "title": "Queue, 1 producer to 1 consumer, 1 MiB items",
        "python": {"mp.Queue": big_items},
    },
}
