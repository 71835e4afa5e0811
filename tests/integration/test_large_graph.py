"""Graphs larger than one update-graph batch arrive in several messages and compute."""

from __future__ import annotations

import dask
from conftest import poll
from task_functions import inc

from shoal import Client, LocalCluster


def test_graph_sent_in_batches_computes_and_is_forgotten():
    with dask.config.set({"shoal.client.graph-batch-size": 100}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as c:
            dsk = {("x", 0): 0}
            for i in range(1, 1000):
                dsk[("x", i)] = (inc, ("x", i - 1))
            dsk["y"] = (sum, [("x", i) for i in range(0, 1000, 10)])
            assert c.get(dsk, "y") == sum(range(0, 1000, 10))
            # nothing left behind once the result was gathered and released
            state = cluster.scheduler.state
            poll(lambda: not state.tasks)
