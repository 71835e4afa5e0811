"""Data bigger than memory, on real worker processes: spilling to disk, pausing and
resuming, a full disk, memory kills, memory figures, and configuration reaching workers."""

from __future__ import annotations

import os
import re
import urllib.request

import dask
import numpy as np
import psutil
import pytest

from memory_task_functions import block, drop, hog, hold, total
from shoal import Client, KilledWorker, LocalCluster, wait

pytestmark = pytest.mark.system

MiB = 2**20


def _metrics(c):
    return {a: w["metrics"] for a, w in c.scheduler_info()["workers"].items()}


def test_persist_bigger_than_memory_spills_and_finishes():
    """The script a new user runs: 1.6 GB persisted on 2 x 600 MiB workers."""
    da = pytest.importorskip("dask.array")
    with Client(n_workers=2, threads_per_worker=1, memory_limit="600MiB") as c:
        lazy = da.random.RandomState(0).random_sample((20000, 10000), chunks=(1000, 1000))
        x = lazy.persist()
        wait(x, timeout=120)
        assert len(c.who_has(x)) == 200
        spilled = c.run(lambda dask_worker: dask_worker.store.disk_bytes)
        assert sum(spilled.values()) > 400 * MiB  # at least a quarter of it went to disk
        total_ = x.sum().compute()
        assert abs(total_ - x.size / 2) < 0.01 * x.size
        # the same answer as dask computes it alone, block for block
        for sl in (np.s_[:1000, :1000], np.s_[-1000:, -1000:]):
            assert np.array_equal(x[sl].compute(), lazy[sl].compute(scheduler="sync"))


def test_memory_figures_in_scheduler_info(poll):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="300MiB") as cl, Client(cl) as c:
        futs = c.map(block, range(30), nbytes=8 * MiB)  # 240 MiB: above target (180 MiB)
        wait(futs, timeout=60)

        def spilled_reported():
            # spilling runs on the worker's spill thread after a memory sample: on a busy
            # machine a report can come while it is under way, so wait for it to settle
            (m,) = _metrics(c).values()
            settled = m["managed"] <= 0.6 * 300 * MiB + 8 * MiB  # target + one chunk
            return m if m["spilled_bytes"]["disk"] > 0 and m["managed"] > 0 and settled else None

        m = poll(spilled_reported, timeout=20)
        assert m["managed_bytes"] == sum(c.nbytes(summary=False).values())
        assert m["managed"] + m["spilled"] == m["managed_bytes"]
        assert m["memory"] > m["managed"] and m["unmanaged"] == m["memory"] - m["managed"]
        # the dashboard's workers table shows the same split: managed · unmanaged · spilled
        def dashboard_split():
            with urllib.request.urlopen(cl.dashboard_link.rsplit("/", 1)[0] + "/workers", timeout=10) as r:
                found = re.search(r'class="split">([^<]*)</span>', r.read().decode())
            parts = found.group(1).split(" · ") if found else []
            return parts if len(parts) == 3 and parts[2] != "0 B" and parts[0] != "0 B" else None

        assert poll(dashboard_split, timeout=20)
        # what was spilled comes back for the client, as it was
        assert c.submit(total, *futs[:3]).result(timeout=30) == pytest.approx(
            sum(block(i, 8 * MiB).sum() for i in range(3))
        )
        assert np.array_equal(c.gather(futs[0]), block(0, 8 * MiB))


def test_paused_worker_gets_no_work_still_answers_and_resumes(poll):
    limit = 400 * MiB
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=limit) as cl, Client(cl) as c:
        kept = c.submit(block, 0, 1 * MiB)
        assert kept.result(timeout=30).nbytes == 1 * MiB
        # memory outside the data store: nothing to spill, the worker must pause; bring
        # its RSS to ~87% of the limit (above pause at 80%, below the nanny's 95%)
        [rss] = c.run(lambda: psutil.Process().memory_info().rss).values()
        c.submit(hold, "ballast", int(0.87 * limit) - rss, pure=False).result(timeout=60)
        (addr,) = poll(lambda: [a for a, w in c.scheduler_info()["workers"].items() if w["status"] == "paused"], 10)
        pending = c.submit(total, kept)
        # a paused worker still serves its data and answers Client.run
        assert np.array_equal(c.gather(kept), block(0, 1 * MiB))
        assert c.run(os.getpid)[addr] > 0
        assert not pending.done()
        c.run(drop, "ballast")
        assert pending.result(timeout=30) == pytest.approx(block(0, 1 * MiB).sum())
        poll(lambda: c.scheduler_info()["workers"][addr]["status"] == "running", 10)
        logs = "\n".join(line for _, line in c.get_worker_logs()[addr])
        assert "paused" in logs and "resumed" in logs


def test_full_disk_pauses_the_worker_and_loses_nothing(tiny_disk, poll):
    limit = 400 * MiB
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, memory_limit=limit, local_directory=str(tiny_disk)
        ) as cl,
        Client(cl) as c,
    ):
        # 320 MiB of results: above target (240 MiB), and the disk takes only 2 MiB
        futs = c.map(block, range(40), nbytes=8 * MiB)
        (addr,) = poll(lambda: [a for a, w in c.scheduler_info()["workers"].items() if w["status"] == "paused"], 60)
        logs = "\n".join(line for _, line in c.get_worker_logs()[addr])
        assert "No space left on device" in logs
        events = [e for _, e in c.get_events("worker-spill-error")]
        assert events and "No space left on device" in events[0]["error"]
        done = [f for f in futs if f.status == "finished"]
        assert done and len(done) < len(futs)
        # every stored result is intact
        for f, value in zip(done, c.gather(done)):
            assert np.array_equal(value, block(futs.index(f), 8 * MiB))
        # freeing data lets the worker resume and finish the rest
        keep = futs[-1]
        del done, value, f
        for f in futs[:-1]:
            f.release()
        assert np.array_equal(keep.result(timeout=60), block(39, 8 * MiB))
        poll(lambda: c.scheduler_info()["workers"][addr]["status"] == "running", 10)


def test_a_task_that_allocates_past_the_limit_fails_with_killed_worker_naming_memory():
    with dask.config.set({"shoal.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="300MiB") as cl:
            with Client(cl) as c:
                others = c.map(block, range(4), nbytes=MiB)
                bad = c.submit(hog, 600 * MiB)
                with pytest.raises(KilledWorker) as info:
                    bad.result(timeout=60)
                text = str(info.value)
                assert "ran out of memory" in text and "memory budget" in text and "300.00 MiB" in text
                # the rest of the graph and the cluster are unaffected
                assert [v.nbytes for v in c.gather(others)] == [MiB] * 4
                assert c.submit(total, others[0]).result(timeout=30) == pytest.approx(block(0, MiB).sum())


def test_config_set_before_the_cluster_reaches_worker_processes():
    with dask.config.set({"shoal.worker.memory.target": 0.42, "shoal.worker.memory.pause": False, "user.x": [1, 2]}):
        cl = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="1GiB")
    with cl, Client(cl) as c:
        seen = c.run(lambda dask_worker: (dask_worker.memory_limits.target, dask_worker.memory_limits.pause))
        assert list(seen.values()) == [(0.42, None)]
        assert list(c.run(dask.config.get, "user.x").values()) == [[1, 2]]


def test_memory_limit_zero_turns_spilling_off_and_leaves_no_files(poll):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=0) as cl, Client(cl) as c:
        kinds = c.run(lambda dask_worker: type(dask_worker.store).__name__)
        assert list(kinds.values()) == ["dict"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="300MiB") as cl, Client(cl) as c:
        futs = c.map(block, range(60), nbytes=8 * MiB)  # 480 MiB: 240 per worker, target 180
        wait(futs, timeout=60)
        dirs = c.run(lambda dask_worker: dask_worker.store.directory)
        poll(lambda: all(os.listdir(d) for d in dirs.values()), 10)
        del futs
    assert not any(os.path.exists(d) for d in dirs.values())


def test_replicate_and_rebalance_move_spilled_data_intact(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="300MiB") as cl, Client(cl) as c:
        a, b = c.scheduler_info()["workers"]
        futs = c.map(block, range(30), nbytes=8 * MiB, workers=[a])  # 240 MiB on one worker: target 180
        wait(futs, timeout=60)
        poll(lambda: c.run(lambda dask_worker: dask_worker.store.disk_bytes)[a] > 0, 10)
        c.rebalance(futs)
        held = c.has_what()
        assert held[b] and held[a]
        c.replicate(futs[:5], n=2)
        assert all(len(h) == 2 for h in c.who_has(futs[:5]).values())
        for i, value in enumerate(c.gather(futs)):
            assert np.array_equal(value, block(i, 8 * MiB))
