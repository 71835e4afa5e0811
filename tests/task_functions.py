"""Task functions shared by the tests of tasks that use the cluster. They live in a
module of their own (on the path of the test process and so of its worker processes)
so that integration and system tests can both send them to workers."""

from __future__ import annotations

import os
import pathlib
import time

from shoal import MultiLock, Queue, Reschedule, get_client, get_worker, rejoin, secede, worker_client


def fib(n):
    if n < 2:
        return n
    with worker_client() as c:
        a = c.submit(fib, n - 1, pure=False)
        b = c.submit(fib, n - 2, pure=False)
        return a.result() + b.result()


def double(i):
    return 2 * i


def fan_out(n):
    c = get_client()
    futures = c.map(double, range(n))
    secede()
    total = sum(c.gather(futures))
    rejoin()
    return total


def reschedule_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise Reschedule()
    return "second run"


def where_am_i():
    return get_worker().address


def compute_inside():
    import dask

    get_client()  # the task's client becomes dask's scheduler in a worker process
    parts = [dask.delayed(double)(i) for i in range(20)]
    return dask.delayed(sum)(parts).compute()


def flaky(path, fails):
    """Fail the first ``fails`` calls (counted in the file at ``path``), then return the
    number of earlier calls."""
    p = pathlib.Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fails:
        raise ValueError(f"attempt {n}")
    return n


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def boom(x):
    raise ValueError(f"boom {x}")


# --- coordination primitives (Queue, MultiLock) on worker processes


def produce_futures(name, n):
    # Both tasks block on the queue while the futures they exchange need a thread to
    # run: like any task that waits on other tasks, they leave the worker's pool.
    with worker_client() as c:
        q = Queue(name, maxsize=2, client=c)
        for i in range(n):
            q.put(c.submit(inc, i, pure=False))
    return os.getpid()


def consume_futures(name, n):
    with worker_client() as c:
        q = Queue(name, client=c)
        total = sum(q.get(timeout=30).result() for _ in range(n))
    return total, os.getpid()


def multilocked_increments(path, names, n):
    for _ in range(n):
        with MultiLock(names):
            with open(path) as f:
                value = int(f.read())
            time.sleep(0.001)  # widen the race window
            with open(path, "w") as f:
                f.write(str(value + 1))
    return os.getpid()


# --- tasks that kill the worker process running them (KilledWorker)


def die():
    os._exit(1)


def die_when(path):
    """Kill this worker process once `path` exists (the test creates it)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(1)
