"""The shuffle service on real worker processes: spilling under a memory limit, and a
worker SIGKILLed mid-shuffle costs a restart of that shuffle, not the answer."""

from __future__ import annotations

import os
import signal

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from shuffle_functions import slow_partition

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system


def frame(n=20_000, nparts=20):
    rng = np.random.default_rng(1)
    pdf = pd.DataFrame({"k": rng.integers(0, 10_000, n), "v": rng.random(n), "s": rng.choice(["a", "b"], n)})
    return dd.from_pandas(pdf, npartitions=nparts)


def same(got, want):
    cols = list(want.columns)
    pd.testing.assert_frame_equal(got.sort_values(cols).reset_index(drop=True), want.sort_values(cols).reset_index(drop=True))


def test_sigkill_of_an_owner_mid_shuffle(poll):
    ddf = frame()
    slow = ddf.map_partitions(slow_partition, 0.1, meta=ddf._meta)
    want = slow.shuffle("k").compute(scheduler="sync")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        fut = c.compute(slow.shuffle("k"))

        def runs():
            return c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.shuffle.book.runs))

        poll(runs, timeout=60)  # transfers are under way
        victim = next(iter(cluster.workers.values()))
        os.kill(victim.pid, signal.SIGKILL)
        same(fut.result(timeout=120), want)
        restarts = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.shuffle.restarts)
        assert restarts >= 1


def test_shuffle_bigger_than_the_buffer_spills_on_workers():
    ddf = frame(n=200_000, nparts=20)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1 GiB") as cluster,
        Client(cluster) as c,
    ):
        c.run(lambda dask_worker: setattr(dask_worker.extensions["shuffle"], "_budget", 256 * 1024))
        got = ddf.shuffle("k").compute()
        same(got, ddf.compute(scheduler="sync"))
        spilled = c.run(lambda dask_worker: dask_worker.extensions["shuffle"].spilled_bytes)
        assert sum(spilled.values()) > 0
