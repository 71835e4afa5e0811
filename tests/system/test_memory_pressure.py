"""Root-task overproduction: a wide graph whose intermediates are several times the
workers' memory must run with a small live set, because reductions are prioritized over
new roots and workers only hold a bounded number of tasks."""

from __future__ import annotations

import os
import threading

import pytest

pytestmark = pytest.mark.system


def test_wide_graph_stays_far_below_the_memory_limit():
    da = pytest.importorskip("dask.array")
    psutil = pytest.importorskip("psutil")
    from shoal import Client, LocalCluster

    limit = 512 * 2**20
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit) as cl, Client(cl) as c:
        procs = [psutil.Process(pid) for pid in c.run(os.getpid).values()]
        peak = dict.fromkeys(p.pid for p in procs)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for p in procs:
                    peak[p.pid] = max(peak[p.pid] or 0, p.memory_info().rss)
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # 4 GiB of 32 MiB roots (4x the two workers' limits together), combined elementwise
        x = da.random.random((1024, 524_288), chunks=(8, 524_288))
        result = x.sum(axis=0).sum().compute()
        stop.set()
        sampler.join()
        assert 0.45 * x.size < result < 0.55 * x.size
        assert max(peak.values()) < limit, {pid: f"{v / 2**20:.0f} MiB" for pid, v in peak.items()}
