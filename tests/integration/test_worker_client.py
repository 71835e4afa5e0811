"""Tasks that use the cluster: get_client, worker_client, secede/rejoin, Reschedule."""

from __future__ import annotations

import pytest
from task_functions import compute_inside, fan_out, fib, reschedule_once, where_am_i

from shoal import get_worker


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


def test_dask_compute_inside_a_task(client):
    assert client.submit(compute_inside, pure=False).result(timeout=60) == 2 * sum(range(20))
