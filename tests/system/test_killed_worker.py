"""A task that kills its worker process fails with `KilledWorker` after exactly
`allowed-failures + 1` deaths — and tasks merely queued on a dying worker are never
blamed (distributed blames every task assigned to the dead worker)."""

from __future__ import annotations

import dask
import pytest

from task_functions import die, die_when, inc

from shoal import Client, KilledWorker, LocalCluster

pytestmark = pytest.mark.system


def test_task_killing_every_worker_fails_after_the_allowed_count(poll):
    with dask.config.set({"shoal.scheduler.allowed-failures": 1}):
        with LocalCluster(n_workers=3, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
            f = c.submit(die, pure=False)
            with pytest.raises(KilledWorker) as info:
                f.result(timeout=60)
            exc = info.value
            assert exc.task == f.key and exc.allowed_failures == 1
            assert exc.last_worker.startswith("tcp://")
            assert f"Attempted to run task {f.key!r} on 2 different workers" in str(exc)
            # two deaths, not three: the last worker lives and keeps working
            poll(lambda: len(c.nthreads()) == 1, timeout=30)
            assert c.submit(inc, 1).result(timeout=30) == 2
            assert len(c.nthreads()) == 1


def test_tasks_queued_on_a_dying_worker_are_not_blamed(poll, tmp_path):
    flag = tmp_path / "die-now"
    with dask.config.set({"shoal.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
            a, b = sorted(c.nthreads())
            crash = c.submit(die_when, str(flag), workers=[a], pure=False)
            queued = c.submit(inc, 41, workers=[a], allow_other_workers=True, pure=False)
            # both are assigned to `a`: the crash holds its only thread, `queued` waits there
            poll(lambda: set(c.processing().get(a, ())) == {crash.key, queued.key}, timeout=30)
            flag.touch()
            with pytest.raises(KilledWorker):
                crash.result(timeout=60)
            assert queued.result(timeout=60) == 42  # rescheduled to `b`, no error
            assert sorted(c.nthreads()) == [b]
