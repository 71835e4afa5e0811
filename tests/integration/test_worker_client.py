"""Tasks that use the cluster: get_client, worker_client, secede/rejoin, Reschedule."""

from __future__ import annotations

import os

import pytest

from shoal import Reschedule, get_client, get_worker, rejoin, secede, worker_client


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


def test_recursive_fib_does_not_deadlock_on_single_thread_workers(client):
    # the full recursion tree: 177 tasks, each waiting on two others
    assert client.submit(fib, 10, pure=False).result(timeout=60) == 55


def test_task_secedes_to_wait_on_100_subtasks(client):
    assert client.submit(fan_out, 100, pure=False).result(timeout=60) == 2 * sum(range(100))


def test_reschedule_runs_the_task_again(client, tmp_path):
    marker = str(tmp_path / "marker")
    assert client.submit(reschedule_once, marker, pure=False).result(timeout=30) == "second run"


def test_get_worker_inside_and_outside_tasks(client):
    assert client.submit(where_am_i, pure=False).result() in client.nthreads()
    with pytest.raises(ValueError, match="No worker found"):
        get_worker()


def compute_inside():
    import dask

    get_client()  # the task's client becomes dask's scheduler in a worker process
    parts = [dask.delayed(double)(i) for i in range(20)]
    return dask.delayed(sum)(parts).compute()


def test_dask_compute_inside_a_task(client):
    assert client.submit(compute_inside, pure=False).result(timeout=60) == 2 * sum(range(20))
