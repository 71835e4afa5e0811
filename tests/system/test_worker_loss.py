"""Losing a worker process loses no result that can be recomputed, with or without a
nanny to restart it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from shoal import Client, LocalCluster
from shoal.deploy.local import WorkerProcess
from shoal.worker.nanny import Nanny

pytestmark = pytest.mark.system


def slowinc(x):
    time.sleep(0.005)
    return x + 1


@pytest.mark.parametrize("worker_class", [Nanny, WorkerProcess])
def test_sigkill_of_a_worker_mid_computation(poll, worker_class):
    with (
        LocalCluster(n_workers=3, threads_per_worker=1, processes=True, worker_class=worker_class) as cluster,
        Client(cluster) as c,
    ):
        a = c.map(slowinc, range(150))
        b = c.map(slowinc, a)
        total = c.submit(sum, b)
        poll(lambda: sum(f.done() for f in a) >= 40, timeout=30)
        victim = next(iter(cluster.workers.values()))
        dead_pid = victim.pid
        os.kill(dead_pid, signal.SIGKILL)
        assert total.result(timeout=60) == sum(range(2, 152))
        # results that lived only on the dead worker are recomputed when asked for
        assert c.gather(a) == list(range(1, 151))
        if worker_class is Nanny:  # the nanny started a new worker process
            poll(lambda: len(c.nthreads()) == 3, timeout=30)
            assert dead_pid not in c.run(os.getpid).values()
        else:
            assert len(c.nthreads()) == 2
