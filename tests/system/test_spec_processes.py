"""SpecCluster / LocalCluster with real worker processes: scaling, Adaptive, retiring
workers through their nannies with no data lost, logs from every process."""

from __future__ import annotations

import logging
import time

import psutil
import pytest

from shoal import Client, LocalCluster, Nanny, Scheduler, SpecCluster, WorkerStartTimeoutError

pytestmark = pytest.mark.system


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_spec_cluster_of_nannies_scales_up_and_down(poll):
    scheduler = {"cls": Scheduler, "options": {"address": "tcp://127.0.0.1:0"}}
    worker = {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": "1 GiB"}}
    with SpecCluster(workers={"a": worker}, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        assert cluster.observed == {"a"}
        cluster.scale(3)
        assert cluster.observed == {"a", 0, 1} and len(c.nthreads()) == 3
        pids = {n: w.pid for n, w in cluster.workers.items()}
        futures = c.map(lambda i: i * 2, range(20), workers=[1], allow_other_workers=False)
        assert c.gather(futures) == [i * 2 for i in range(20)]
        cluster.scale(1)
        assert cluster.observed == {"a"} and set(cluster.workers) == {"a"}
        poll(lambda: _gone(pids[0]) and _gone(pids[1]))
        assert c.gather(futures) == [i * 2 for i in range(20)]
        assert "memory=1.00 GiB" in repr(cluster)
        with pytest.raises(WorkerStartTimeoutError, match="1/2 workers arrived"):
            cluster.wait_for_workers(2, timeout=0.2)


def test_retire_workers_through_nanny_loses_nothing(poll):
    with LocalCluster(n_workers=3, threads_per_worker=1) as cluster, Client(cluster) as c:
        info = c.scheduler_info()["workers"]
        by_name = {meta["name"]: addr for addr, meta in info.items()}
        futures = c.map(lambda i: i + 1000, range(40), workers=[by_name[0]], allow_other_workers=False)
        more = c.map(lambda i: -i, range(10), workers=[by_name[1]], allow_other_workers=False)
        assert c.gather(futures) == [i + 1000 for i in range(40)]
        c.gather(more)
        nanny0, pid0 = cluster.workers[0], cluster.workers[0].pid
        out = c.retire_workers([by_name[0], 1])
        assert set(out) == {by_name[0], by_name[1]}
        assert {meta["name"] for meta in out.values()} == {0, 1}
        assert list(c.nthreads()) == [by_name[2]]
        assert c.gather(futures) == [i + 1000 for i in range(40)]
        assert c.gather(more) == [-i for i in range(10)]
        assert all(v == [by_name[2]] for v in c.who_has(futures + more).values())
        poll(lambda: _gone(pid0))
        assert nanny0.status == "closed"  # so it restarts nothing
        cluster.scale(2)  # the retired workers are forgotten: one new worker (a free name is reused)
        assert len(c.nthreads()) == 2 and set(cluster.workers) == {0, 2} and cluster.workers[0] is not nanny0


def test_adaptive_local_cluster_grows_and_shrinks(poll):
    with LocalCluster(n_workers=0, threads_per_worker=1) as cluster, Client(cluster) as c:
        adaptive = cluster.adapt(minimum=0, maximum=3, interval="50ms", wait_count=3, target_duration="100ms")
        futures = c.map(lambda i: time.sleep(0.2) or i, range(30))
        poll(lambda: len(c.nthreads()) == 3, timeout=60)
        kept = c.submit(lambda: "kept")
        assert c.gather(futures) == list(range(30))
        assert kept.result() == "kept"
        del futures
        poll(lambda: len(c.nthreads()) <= 1, timeout=60)
        assert kept.result() == "kept"
        del kept
        poll(lambda: len(cluster.worker_spec) == 0 and not c.nthreads(), timeout=60)
        assert adaptive.state == "running"
    assert adaptive.state == "stopped"


def test_logs_from_worker_processes_and_nannies():
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as c:
        c.run(lambda dask_worker: logging.getLogger("shoal.worker").warning("hello from %s", dask_worker.name))
        logs = c.get_worker_logs()
        assert set(logs) == set(c.nthreads())
        for address, lines in logs.items():
            name = c.scheduler_info()["workers"][address]["name"]
            assert any(f"hello from {name}" in line for _, line in lines)
        newest = c.get_worker_logs(n=1)
        assert all(len(lines) == 1 and "hello from" in lines[0][1] for lines in newest.values())
        nanny_logs = c.get_worker_logs(nanny=True)
        assert set(nanny_logs) == set(c.nthreads())
        all_logs = cluster.get_logs()
        assert set(all_logs) == {"Cluster", "Scheduler"} | set(c.nthreads())
        assert all("hello from" in all_logs[a] for a in c.nthreads())
