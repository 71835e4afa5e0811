"""`gather` of many futures finishes when a worker is SIGKILLed while it runs (issue 18):
the client learns where each key lives from the scheduler's messages (`key-moved`,
`lost-data`, `key-in-memory`), not by polling `who_has`."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading

import dask.config
import pytest

from shoal import Client, LocalCluster, wait

pytestmark = pytest.mark.system

N = 10_000


def payload(i):
    # larger than the inline limit (2 KiB): the client must fetch it from a worker
    return bytes(4096) + i.to_bytes(4, "little")


def test_gather_of_many_futures_finishes_when_a_worker_is_killed(poll):
    # validating the whole state after every stimulus is quadratic at this size: check it
    # once per round instead
    with (
        dask.config.set({"shoal.scheduler.validate": False}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        for delay in (0.0, 0.01, 0.05, 0.1, 0.2):
            futures = c.map(payload, range(N), key=[f"payload-{delay}-{i}" for i in range(N)])
            wait(futures, timeout=120)
            victim = next(iter(cluster.workers.values()))
            pid = victim.pid
            killer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
            killer.start()
            try:
                # a hang fails here instead of wedging the suite
                values = pool.submit(c.gather, futures).result(timeout=90)
            finally:
                killer.join()
            assert len(values) == N
            assert all(v[-4:] == i.to_bytes(4, "little") and len(v) == 4100 for i, v in enumerate(values))
            c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())
            # the nanny restarts the worker before the next round
            poll(lambda: len(c.nthreads()) == 2 and pid not in c.run(os.getpid).values(), timeout=60)
            del futures, values
