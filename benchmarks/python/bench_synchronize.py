"""Python's side of bench_synchronize.cpp: Lock, Value under its lock, Event, Barrier."""
import multiprocessing as mp

from common import per_op

ctx = mp.get_context("fork")


def lock_uncontended():
    lock = ctx.Lock()

    def run(n):
        for _ in range(n):
            lock.acquire()
            lock.release()

    return per_op(run, n=200_000)


def _add(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value_add_2proc():
    # n additions in all, half in each process; per_op gives the time per addition.
    def run(n):
        v = ctx.Value("l", 0)
        p = ctx.Process(target=_add, args=(v, n // 2))
        p.start()
        _add(v, n - n // 2)
        p.join()
        assert v.value == n

    return per_op(run, n=200_000)


def _pong(ping, pong, stop):
    while True:
        ping.wait()
        ping.clear()
        if stop.value:
            return
        pong.set()


def event_wake():
    # Each round trip is two set-to-wake hops.
    def run(n):
        ping, pong, stop = ctx.Event(), ctx.Event(), ctx.Value("i", 0, lock=False)
        p = ctx.Process(target=_pong, args=(ping, pong, stop))
        p.start()
        for _ in range(n):
            ping.set()
            pong.wait()
            pong.clear()
        stop.value = 1
        ping.set()
        p.join()

    return per_op(run, n=5_000) / 2


def _rounds(barrier, n):
    for _ in range(n):
        barrier.wait()


def barrier_round():
    def run(n):
        b = ctx.Barrier(2)
        p = ctx.Process(target=_rounds, args=(b, n))
        p.start()
        _rounds(b, n)
        p.join()

    return per_op(run, n=5_000)


def _create(make):
    # Creating 1,000 objects and dropping them: per_op gives the time per object.
    def run(n):
        for _ in range(n // 1_000):
            objects = [make() for _ in range(1_000)]
            del objects

    return per_op(run, n=10_000)


def lock_create():
    return _create(ctx.Lock)


def value_create():
    return _create(lambda: ctx.Value("i", 0))


ROWS = {
    "lock_create": {
        "title": "Creating a Lock (and dropping it), 1,000 at a time",
        "python": {"mp.Lock()": lock_create},
    },
    "value_create": {
        "title": "Creating a Value<int> with its lock (and dropping it), 1,000 at a time",
        "python": {"mp.Value('i')": value_create},
    },
    "lock_uncontended": {
        "title": "Uncontended Lock acquire + release",
        "python": {"mp.Lock": lock_uncontended},
    },
    "value_add_2proc": {
        "title": "Two processes adding 1 to a Value under its lock, per addition",
        "python": {"mp.Value": value_add_2proc},
    },
    "event_wake": {
        "title": "Event set to wake-up in another process",
        "python": {"mp.Event": event_wake},
    },
    "barrier_round_2proc": {
        "title": "One Barrier round of two processes",
        "python": {"mp.Barrier": barrier_round},
    },
}
