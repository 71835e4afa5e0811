"""Losing a worker process loses no result that can be recomputed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system


def slowinc(x):
    time.sleep(0.005)
    return x + 1


def test_sigkill_of_a_worker_mid_computation(poll):
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        a = c.map(slowinc, range(150))
        b = c.map(slowinc, a)
        total = c.submit(sum, b)
        poll(lambda: sum(f.done() for f in a) >= 40, timeout=30)
        victim = next(iter(cluster.workers.values()))
        os.kill(victim.pid, signal.SIGKILL)
        assert total.result(timeout=60) == sum(range(2, 152))
        # results that lived only on the dead worker are recomputed when asked for
        assert c.gather(a) == list(range(1, 151))
        assert len(c.nthreads()) == 2
