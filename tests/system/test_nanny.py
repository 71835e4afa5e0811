"""Nannies: a worker process that dies or outgrows its memory limit comes back;
`Client.restart` restarts every worker and cancels all work; `Client.shutdown`."""

from __future__ import annotations

import os
import signal

import pytest
from nanny_task_functions import getpid, hog_once, inc, sleep_forever

from shoal import CancelledError, Client, LocalCluster, Nanny

pytestmark = pytest.mark.system


def worker_pids(c: Client) -> set[int]:
    return set(c.run(os.getpid, on_error="ignore").values())


def test_killed_worker_comes_back_and_runs_new_work(poll):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        nanny = cluster.workers[0]
        assert isinstance(nanny, Nanny)
        old_pid = nanny.pid
        assert worker_pids(c) == {old_pid}
        os.kill(old_pid, signal.SIGKILL)
        poll(lambda: c.nthreads() and worker_pids(c) - {old_pid}, timeout=30)
        assert c.submit(inc, 41).result(timeout=30) == 42
        (new_pid,) = worker_pids(c)
        assert new_pid != old_pid and new_pid == nanny.pid
        assert c.scheduler_info()["workers"].popitem()[1]["nanny"] == nanny.id
        events = c.get_events("worker-restart")
        assert [e[1]["pid"] for e in events] == [old_pid]
        assert events[0][1]["reason"] == "killed by SIGKILL"


def test_worker_over_its_memory_limit_is_restarted(poll, tmp_path):
    limit = 400 * 2**20
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=limit) as cluster,
        Client(cluster) as c,
    ):
        old_pid, old_address = cluster.workers[0].pid, cluster.workers[0].worker_address
        marker = tmp_path / "hogged"
        # the first run holds more than 95% of the limit and is killed; the rerun on the
        # restarted worker returns at once
        fut = c.submit(hog_once, str(marker), limit)
        new_pid = fut.result(timeout=60)
        assert int(marker.read_text()) == old_pid
        assert new_pid != old_pid
        (time_, event), *_ = c.get_events("worker-restart-memory")
        assert event["pid"] == old_pid
        assert event["rss"] > 0.95 * limit
        assert "exceeded 95% memory budget" in event["reason"]
        # also recorded under the worker's own topic (with its add/remove events)
        assert event in [e[1] for e in c.get_events(old_address)]
        assert c.submit(inc, 1).result(timeout=30) == 2


def test_restart_cancels_all_work_and_brings_back_new_workers(poll, tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        done = c.submit(inc, 1)
        assert done.result() == 2
        marker = tmp_path / "running"
        running = c.submit(sleep_forever, str(marker))
        poll(marker.exists, timeout=30)
        old = worker_pids(c)
        assert c.restart(timeout=60) is None
        for f in (done, running):
            assert f.cancelled()
            with pytest.raises(CancelledError, match="scheduler-restart"):
                f.result()
        assert c.futures == {}
        assert c.generation == 1
        assert c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.state.tasks)) == 0
        new = worker_pids(c)
        assert len(new) == 2 and not new & old
        # the same keys can be computed again
        again = c.submit(inc, 1)
        assert again.key == done.key
        assert again.result(timeout=30) == 2


def test_futures_published_before_a_restart_are_cancelled_not_hung():
    """A restart forgets every task; a dataset or variable still names the keys. Getting
    them must give cancelled futures at once, never ones that wait forever."""
    from shoal import Variable

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        f = c.submit(inc, 1)
        assert f.result() == 2
        c.publish_dataset(f, name="before-restart")
        Variable("before-restart").set(f)
        c.restart(timeout=60)
        for g in (c.get_dataset("before-restart"), Variable("before-restart").get(timeout=5)):
            with pytest.raises(CancelledError, match="unknown-key"):
                g.result(timeout=10)


def test_restart_cancels_the_futures_of_other_clients(poll):
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as a,
        Client(cluster, set_as_default=False) as b,
    ):
        fa = a.submit(inc, 10)
        fb = b.submit(getpid, 1)
        assert fa.result() == 11 and fb.result() > 0
        b.restart()
        poll(fa.cancelled)
        assert a.futures == {} and b.futures == {}
        assert a.submit(inc, 10).result(timeout=30) == 11


def test_shutdown_closes_the_cluster():
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True)
    c = Client(cluster)
    nanny = cluster.workers[0]
    proc = nanny.process
    c.shutdown()
    assert c.status == "closed"
    assert cluster.status == "closed"
    assert proc.poll() is not None


def test_restart_workers_by_name_keeps_other_work(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        data = c.map(inc, range(20))
        assert c.gather(data) == list(range(1, 21))
        pid0, pid1 = cluster.workers[0].pid, cluster.workers[1].pid
        assert c.restart_workers([0], timeout=60) == {0: "OK"}
        assert cluster.workers[0].pid != pid0 and cluster.workers[1].pid == pid1
        assert len(c.nthreads()) == 2
        # futures survive; results that lived on the restarted worker are recomputed
        assert all(not f.cancelled() for f in data)
        assert c.gather(data) == list(range(1, 21))


def test_restart_workers_requires_a_nanny():
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        (addr,) = c.nthreads()
        with pytest.raises(ValueError, match="Restarting workers requires a nanny"):
            c.restart_workers([addr])


def test_worker_processes_get_shoals_allocator_and_collector_settings():
    def settings() -> tuple:
        import gc

        gc.collect()
        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_"), gc.get_freeze_count()

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        ((trim, mmap, frozen),) = c.run(settings).values()
        assert (trim, mmap) == ("65536", "4194304")  # heap blocks under 4 MiB: no page faults
        assert frozen > 1000  # survivors of full collections are not walked again (shoal._gc)
