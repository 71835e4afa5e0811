"""Workers that go silent are removed after `shoal.scheduler.worker-ttl`; heartbeats keep
quiet workers alive; work of a removed worker is recomputed elsewhere."""

from __future__ import annotations

import dask.config
from task_functions import inc

from shoal import Client, LocalCluster


def test_a_silent_worker_is_removed_and_its_work_recomputed(poll):
    with (
        dask.config.set({"shoal.scheduler.worker-ttl": "500ms", "shoal.worker.heartbeat-interval": "50ms"}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster) as c,
    ):
        first = c.submit(inc, 1)
        assert first.result(timeout=10) == 2
        [gone] = c.who_has(first)[first.key]
        silent = next(w for w in cluster.workers.values() if w.address == gone)
        # the worker stops its heartbeats: to the scheduler it now looks like a worker
        # behind a cut link (its connection stays open)
        c.loop.call_soon_threadsafe(silent._heartbeat_task.cancel)
        poll(lambda: gone not in cluster.scheduler.workers, timeout=10)
        removals = [e for _, e in c.get_events(gone) if e.get("action") == "remove-worker"]
        assert removals and removals[0]["reason"].startswith("worker-ttl: not heard from for")
        # its only result is recomputed on the remaining worker
        assert c.submit(inc, first).result(timeout=10) == 3
        assert c.who_has(first)[first.key] and gone not in c.who_has(first)[first.key]


def test_heartbeats_keep_an_idle_worker(poll):
    with (
        dask.config.set({"shoal.scheduler.worker-ttl": "300ms", "shoal.worker.heartbeat-interval": "30ms"}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster) as c,
    ):
        [addr] = list(cluster.scheduler.workers)
        peer = cluster.scheduler.workers[addr]
        start = peer.last_seen
        # idle for several TTLs: only heartbeats arrive, and they keep the worker
        poll(lambda: peer.last_seen > start + 1.0, timeout=10)
        assert list(cluster.scheduler.workers) == [addr]
        assert c.submit(inc, 1).result(timeout=10) == 2


def test_no_ttl_when_configured_off():
    with (
        dask.config.set({"shoal.scheduler.worker-ttl": None}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
    ):
        assert cluster.scheduler.worker_ttl is None
