"""The shuffle service on real worker processes: spilling under a memory limit, and a
worker SIGKILLed mid-shuffle costs a restart of that shuffle, not the answer."""

from __future__ import annotations

import os
import signal

import psutil

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from memory_task_functions import drop, hold
from shuffle_functions import slow_block, slow_partition

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system


def frame(n=20_000, nparts=20):
    rng = np.random.default_rng(1)
    pdf = pd.DataFrame({"k": rng.integers(0, 10_000, n), "v": rng.random(n), "s": rng.choice(["a", "b"], n)})
    return dd.from_pandas(pdf, npartitions=nparts)


def live_runs(client):
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.shuffle.book.runs))


def same(got, want):
    cols = list(want.columns)
    pd.testing.assert_frame_equal(got.sort_values(cols).reset_index(drop=True), want.sort_values(cols).reset_index(drop=True))


def test_sigkill_of_an_owner_mid_shuffle(poll):
    ddf = frame()
    slow = ddf.map_partitions(slow_partition, 0.1, meta=ddf._meta)
    want = slow.shuffle("k").compute(scheduler="sync")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        fut = c.compute(slow.shuffle("k"))
        poll(lambda: live_runs(c), timeout=60)  # transfers are under way
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


def test_sigkill_of_a_worker_that_owns_nothing(poll):
    # two output partitions on three workers: one worker only sends; losing it costs its
    # transfers again (receivers drop the pieces they already have), not a restart
    ddf = frame(n=6_000, nparts=12)
    slow = ddf.map_partitions(slow_partition, 0.1, meta=ddf._meta)
    want = slow.shuffle("k", npartitions=2).compute(scheduler="sync")
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        fut = c.compute(slow.shuffle("k", npartitions=2))

        def owners():
            return c.run_on_scheduler(
                lambda dask_scheduler: [sorted(r.participants) for r in dask_scheduler.shuffle.book.runs.values()]
            )

        [busy] = poll(owners, timeout=60)
        victim = next(w for w in cluster.workers.values() if w.worker_address not in busy)
        os.kill(victim.pid, signal.SIGKILL)
        same(fut.result(timeout=120), want)
        assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.shuffle.restarts) == 0


def test_restart_mid_shuffle_then_the_same_shuffle_again(poll):
    ddf = frame(n=20_000, nparts=20)
    slow = ddf.map_partitions(slow_partition, 0.1, meta=ddf._meta)
    want = slow.shuffle("k").compute(scheduler="sync")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        fut = c.compute(slow.shuffle("k"))
        poll(lambda: live_runs(c), timeout=60)
        del fut
        c.restart()
        assert live_runs(c) == 0
        # the same graph (the same shuffle id) after the restart: a fresh run, the right answer
        same(slow.shuffle("k").compute(), want)


def test_sigkill_of_an_owner_mid_rechunk(poll):
    x = da.random.default_rng(2).random((400, 300), chunks=(400, 10))
    want = x.rechunk((10, 300)).compute(scheduler="sync")
    y = x.map_blocks(slow_block, 0.1).rechunk((10, 300))  # slow_block changes nothing
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        fut = c.compute(y)
        poll(lambda: live_runs(c), timeout=60)  # transfers are under way
        victim = next(iter(cluster.workers.values()))
        os.kill(victim.pid, signal.SIGKILL)
        np.testing.assert_array_equal(fut.result(timeout=120), want)
        assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.shuffle.restarts) >= 1


def test_a_worker_paused_mid_shuffle_holds_it_until_it_resumes(poll):
    # memory outside the store pushes one worker past `pause` while transfers run: it
    # still receives pieces (on its event loop, spilling them: its buffers are memory
    # its own manager cannot spill), runs nothing, and its outputs (pinned to it) wait;
    # once the memory goes, the shuffle finishes with the right answer
    limit = 1024 * 2**20
    ddf = frame(n=24_000, nparts=24)
    slow = ddf.map_partitions(slow_partition, 0.4, meta=ddf._meta)
    want = ddf.shuffle("k").compute(scheduler="sync")  # slow_partition changes nothing
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit) as cluster,
        Client(cluster) as c,
    ):
        fut = c.compute(slow.shuffle("k"))
        poll(lambda: live_runs(c), timeout=60)
        addr = sorted(c.scheduler_info()["workers"])[0]
        [rss] = c.run(lambda: psutil.Process().memory_info().rss, workers=[addr]).values()
        c.run(hold, "ballast", int(0.87 * limit) - rss, workers=[addr])
        poll(lambda: c.scheduler_info()["workers"][addr]["status"] == "paused", timeout=30)
        assert live_runs(c) and not fut.done()  # its outputs cannot run while it is paused
        received = c.run(lambda dask_worker: dask_worker.extensions["shuffle"].metrics(), workers=[addr])[addr]
        c.run(drop, "ballast", workers=[addr])
        same(fut.result(timeout=120), want)
        poll(lambda: c.scheduler_info()["workers"][addr]["status"] == "running", timeout=30)
        assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.shuffle.restarts) == 0
        assert received["runs"] == 1
