"""`LocalCluster(worker_class=<a Nanny subclass>)` starts supervised worker processes
(issue 17, item 10), as in distributed."""

from __future__ import annotations

import os

import pytest

from shoal import Client, LocalCluster, Nanny

pytestmark = pytest.mark.system


class CountingNanny(Nanny):
    started = 0

    async def start(self):
        type(self).started += 1
        return await super().start()


def test_a_nanny_subclass_as_worker_class():
    with LocalCluster(n_workers=1, threads_per_worker=1, worker_class=CountingNanny, dashboard_address=":0") as cl:
        assert cl.processes
        assert all(isinstance(w, CountingNanny) for w in cl.workers.values())
        assert CountingNanny.started == 1
        with Client(cl) as c:
            pid = c.submit(os.getpid, pure=False).result(timeout=60)
            assert pid != os.getpid()  # in the worker process the nanny started


def test_worker_options_reach_worker_processes_with_and_without_a_nanny():
    from shoal.deploy.local import WorkerProcess

    for worker_class in (Nanny, WorkerProcess):
        with LocalCluster(n_workers=1, threads_per_worker=1, worker_class=worker_class, dashboard_address=None,
                          lifetime="1 hour", heartbeat_interval="250ms") as cl:  # fmt: skip
            with Client(cl) as c:
                got = c.run(lambda dask_worker: (dask_worker.options.lifetime, dask_worker.heartbeat_interval))
                assert list(got.values()) == [(3600.0, 0.25)], worker_class
    with pytest.raises(TypeError, match="'lifetim'.*did you mean 'lifetime'"):
        LocalCluster(n_workers=1, worker_class=WorkerProcess, dashboard_address=None, lifetim="1h")
