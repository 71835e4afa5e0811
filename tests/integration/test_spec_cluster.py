"""SpecCluster with in-process workers, LocalCluster as a SpecCluster, Adaptive,
retire_workers and logs (in-process: one loop, inproc and tcp transports)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest

from shoal import Adaptive, Client, LocalCluster, Scheduler, SpecCluster, Worker, WorkerStartTimeoutError
from shoal.deploy import Adaptive as DeployAdaptive
from shoal.deploy import SpecCluster as DeploySpecCluster
from shoal.utils import Log, Logs

ADDRESSES = {"inproc": "inproc://", "tcp": "tcp://127.0.0.1:0"}


@pytest.fixture(params=["inproc", "tcp"])
def address(request):
    return ADDRESSES[request.param]


def specs(address, n=2, cls=Worker):
    scheduler = {"cls": Scheduler, "options": {"address": address}}
    worker = {"cls": cls, "options": {"nthreads": 1}}
    return scheduler, worker, {i: dict(worker) for i in range(n)}


def test_import_paths():
    assert Adaptive is DeployAdaptive and SpecCluster is DeploySpecCluster
    assert issubclass(LocalCluster, SpecCluster)


def test_spec_sync(address):
    scheduler, worker, workers = specs(address)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker, name="sc") as cluster:
        assert cluster.status == "running"
        assert set(cluster.workers) == {0, 1} == cluster.observed == cluster.plan == cluster.requested
        assert all(isinstance(w, Worker) for w in cluster.workers.values())
        assert cluster.scheduler_address.startswith(address.split("127")[0])
        assert repr(cluster).startswith("SpecCluster('sc', ")
        assert "workers=2, threads=2" in repr(cluster)
        assert "SpecCluster" in cluster._repr_html_()
        assert cluster.dashboard_link == ""
        started = list(cluster.workers.values())
        with Client(cluster) as c:
            assert c.submit(lambda x: x + 1, 1).result() == 2
    assert cluster.status == "closed"
    assert all(w.status == "closed" for w in started)
    cluster.close()  # twice: quiet


def test_cls_as_dotted_string_and_new_worker_spec():
    scheduler = {"cls": "shoal.Scheduler", "options": {"address": "inproc://"}}
    worker = {"cls": "shoal.worker.server.Worker", "options": {"nthreads": 2}}
    with SpecCluster(workers={"a": worker}, scheduler=scheduler, worker=worker) as cluster:
        assert cluster.observed == {"a"}
        spec = cluster.new_worker_spec()
        assert list(spec) == [0] and spec[0] == worker
        cluster.scale(3)
        assert cluster.observed == {"a", 0, 1}
        info = Client(cluster, set_as_default=False)
        try:
            assert sorted(info.nthreads().values()) == [2, 2, 2]
        finally:
            info.close()


def test_scale_up_and_down_keeps_data(address):
    scheduler, worker, workers = specs(address, n=1)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        cluster.scale(3)
        assert len(c.nthreads()) == 3 and cluster.observed == {0, 1, 2}
        futures = c.map(lambda i: i * 10, range(30), workers=[2], allow_other_workers=False)
        c.wait_for_workers(3)
        assert c.gather(futures) == [i * 10 for i in range(30)]
        a2 = cluster.workers[2].address
        assert all(v == [a2] for v in c.who_has(futures).values())
        cluster.scale(1)  # worker 2 holds every result: they move before it goes
        assert cluster.observed == {0} and set(cluster.workers) == {0}
        assert c.gather(futures) == [i * 10 for i in range(30)]
        assert all(len(v) == 1 for v in c.who_has(futures).values())


def test_scale_down_by_address_and_name(address):
    scheduler, worker, workers = specs(address, n=3)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster:
        addr1 = cluster.workers[1].address
        cluster.scale_down([addr1, 2])
        assert cluster.observed == {0} == set(cluster.worker_spec)


def test_scale_by_cores_and_memory_needs_template_options():
    scheduler, worker, _ = specs("inproc://", n=0)
    worker = {"cls": Worker, "options": {"nthreads": 2, "memory_limit": "1 GiB"}}
    with SpecCluster(workers={}, scheduler=scheduler, worker=worker) as cluster:
        cluster.scale(cores=3)
        assert len(cluster.workers) == 2
        cluster.scale(memory="3 GiB")
        assert len(cluster.workers) == 3
    with SpecCluster(scheduler=scheduler, worker={"cls": Worker, "options": {}}) as cluster:
        with pytest.raises(ValueError, match="nthreads"):
            cluster.scale(cores=4)
        with pytest.raises(ValueError, match="memory_limit"):
            cluster.scale(memory="1 GiB")
    with SpecCluster(scheduler=scheduler) as cluster, pytest.raises(ValueError, match="no worker template"):
        cluster.scale(1)


def test_failed_worker_start_is_a_clear_error():
    scheduler = {"cls": Scheduler, "options": {"address": "inproc://"}}
    bad = {"cls": Worker, "options": {"nthreads": 1, "no_such_option": 1}}
    with pytest.raises(TypeError, match="no_such_option"):
        SpecCluster(workers={0: bad}, scheduler=scheduler)


def test_wait_for_workers_timeout_names_counts():
    scheduler, worker, workers = specs("inproc://", n=1)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        with pytest.raises(WorkerStartTimeoutError, match="1/3 workers arrived after 100 ms"):
            cluster.wait_for_workers(3, timeout=0.1)
        with pytest.raises(WorkerStartTimeoutError, match="1/2 workers"):
            c.wait_for_workers(2, timeout="50ms")
        with pytest.raises(ValueError, match="positive integer"):
            cluster.wait_for_workers(0)
        cluster.wait_for_workers(1, timeout=5)


def test_async_spec_cluster():
    async def main():
        scheduler, worker, workers = specs("inproc://", n=1)
        async with SpecCluster(workers=workers, scheduler=scheduler, worker=worker, asynchronous=True) as cluster:
            assert cluster.observed == {0}
            cluster.scale(2)  # runs whether awaited or not
            await cluster
            assert cluster.observed == {0, 1}
            await cluster.scale(1)
            assert cluster.observed == {0}
            await cluster.wait_for_workers(1, timeout=1)
            with pytest.raises(WorkerStartTimeoutError):
                await cluster.wait_for_workers(2, timeout=0.05)
            async with Client(cluster, asynchronous=True) as c:
                assert await c.submit(lambda: 5) == 5
            logs = await cluster.get_logs()
            assert isinstance(logs, Logs) and "Cluster" in logs
        assert cluster.status == "closed"
        with pytest.raises(TypeError, match="async with"), SpecCluster(scheduler=scheduler, asynchronous=True):
            pass

    asyncio.run(main())


def test_retire_workers_moves_unique_data(address):
    scheduler, worker, workers = specs(address, n=3)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        addr = {n: w.address for n, w in cluster.workers.items()}
        futures = c.map(lambda i: i + 100, range(20), workers=[addr[0]], allow_other_workers=False)
        assert c.gather(futures) == [i + 100 for i in range(20)]
        out = c.retire_workers([addr[0]])
        assert list(out) == [addr[0]] and out[addr[0]]["name"] == 0
        assert addr[0] not in c.nthreads()
        assert c.gather(futures) == [i + 100 for i in range(20)]
        holders = {a for v in c.who_has(futures).values() for a in v}
        assert holders and addr[0] not in holders
        # the last worker holding data is kept: its data could not go anywhere
        c.retire_workers([addr[1]])
        out = c.retire_workers([addr[2]])
        assert out == {} and list(c.nthreads()) == [addr[2]]
        assert c.gather(futures) == [i + 100 for i in range(20)]
        with pytest.raises(TypeError, match="unexpected"):
            c.retire_workers([addr[2]], bogus=1)


def test_retire_workers_without_close_only_moves_data():
    scheduler, worker, workers = specs("inproc://", n=2)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        a0 = cluster.workers[0].address
        x = c.submit(lambda: 42, workers=[a0], allow_other_workers=False)
        assert x.result() == 42
        out = c.retire_workers([0], close_workers=False, remove=False)
        assert list(out) == [a0]
        assert len(c.nthreads()) == 2
        assert len(c.who_has([x])[x.key]) == 2


def test_adapt_grows_under_load_and_shrinks_when_idle(poll):
    import time

    scheduler, worker, _ = specs("inproc://", n=0)
    with SpecCluster(scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        adaptive = cluster.adapt(minimum=0, maximum=3, interval="20ms", wait_count=2, target_duration="10ms")
        assert isinstance(adaptive, Adaptive)
        poll(lambda: adaptive.state == "running")
        futures = c.map(lambda i: time.sleep(0.05) or i, range(30))
        poll(lambda: len(cluster.observed) == 3, timeout=10)
        kept = c.submit(lambda: "kept")
        assert c.gather(futures) == list(range(30))
        assert kept.result() == "kept"
        del futures
        # one worker must stay: `kept` lives there, and its data has nowhere else to go
        poll(lambda: len(cluster.observed) == 1 and len(cluster.worker_spec) == 1, timeout=10)
        assert kept.result() == "kept"
        del kept
        poll(lambda: not cluster.observed and not cluster.worker_spec, timeout=10)
        assert any(rec["status"] == "up" for _, rec in adaptive.log)
        assert any(rec["status"] == "down" for _, rec in adaptive.log)
        again = cluster.adapt(maximum=1)  # replaces the first; keeps its other options
        assert adaptive.state == "stopped" and again is not adaptive
        assert again.interval == 0.02 and again.wait_count == 2 and again.maximum == 1
    assert again.state == "stopped"


def test_adapt_respects_minimum_and_validates():
    scheduler, worker, _ = specs("inproc://", n=0)
    with SpecCluster(scheduler=scheduler, worker=worker) as cluster:
        cluster.adapt(minimum=2, maximum=4, interval="10ms")
        cluster.wait_for_workers(2, timeout=10)
        assert len(cluster.worker_spec) == 2
        with pytest.raises(ValueError, match="maximum must be an integer or inf"):
            cluster.adapt(maximum=2.5)
        with pytest.raises(ValueError, match="must not exceed"):
            Adaptive(cluster, minimum=3, maximum=1)


def test_local_cluster_adapt_in_process(poll):
    with LocalCluster(n_workers=0, processes=False) as cluster:
        adaptive = cluster.adapt(minimum=1, maximum=2, interval="10ms")
        poll(lambda: len(cluster.observed) == 1, timeout=10)
        cluster.close()
        assert adaptive.state == "stopped"


def test_logs_of_scheduler_and_workers():
    scheduler, worker, workers = specs("inproc://", n=2)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        logging.getLogger("shoal.test").warning("a <b>marked</b> line")
        lines = c.get_scheduler_logs()
        assert lines and all(isinstance(x, tuple) and len(x) == 2 for x in lines)
        assert any("<b>marked</b>" in line and level == "WARNING" for level, line in lines)
        assert len(c.get_scheduler_logs(n=1)) == 1
        wl = c.get_worker_logs()
        assert set(wl) == set(c.nthreads())
        assert c.get_worker_logs(nanny=True) == {}  # in-process workers have no nanny
        one = cluster.workers[0].address
        assert list(c.get_worker_logs(workers=[one])) == [one]
        logs = cluster.get_logs()
        assert isinstance(logs, Logs) and {"Cluster", "Scheduler"} <= set(logs)
        assert set(logs) - {"Cluster", "Scheduler"} == set(c.nthreads())
        assert isinstance(logs["Scheduler"], Log) and "marked" in logs["Scheduler"]
        assert "Started workers" in logs["Cluster"]
        html = logs._repr_html_()
        assert "&lt;b&gt;marked&lt;/b&gt;" in html and "<b>marked</b>" not in html
        assert list(cluster.get_logs(cluster=False, workers=False)) == ["Scheduler"]


def test_log_length_is_bounded():
    from shoal import log_buffer

    handler = log_buffer.DequeHandler(3)
    log = logging.getLogger("shoal.test.bounded")
    log.addHandler(handler)
    try:
        for i in range(10):
            log.warning("line %d", i)
    finally:
        log.removeHandler(handler)
    assert [line.rsplit(" ", 1)[-1] for _, line in handler.records()] == ["7", "8", "9"]


def test_local_cluster_is_a_spec_cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        assert set(cluster.worker_spec) == {0, 1}
        assert cluster.new_spec["cls"] is Worker
        cluster.scale(3)
        assert cluster.observed == {0, 1, 2}
        cluster.scale(cores=1)
        assert cluster.observed == {0}
        with pytest.raises(NotImplementedError):
            cluster.start_worker()


def test_process_interface_in_a_spec():
    from shoal.deploy import ProcessInterface

    class InProcessWorker(ProcessInterface):
        """What a job-queue spec does, with a Worker on this loop instead of a batch job."""

        def __init__(self, scheduler, name=None, secret=None, nthreads=1):
            super().__init__(scheduler, name)
            self.worker = Worker(scheduler, name=name, secret=secret, nthreads=nthreads)

        async def start(self):
            await self.worker.start()
            self.address = self.worker.address
            return await super().start()

        async def close(self):
            await self.worker.close()
            await super().close()

    scheduler = {"cls": Scheduler, "options": {"address": "inproc://"}}
    worker = {"cls": InProcessWorker, "options": {"nthreads": 2}}
    with SpecCluster(workers={"job-0": worker}, scheduler=scheduler, worker=worker) as cluster:
        assert cluster.observed == {"job-0"}
        job = cluster.workers["job-0"]
        assert job.status == "running" and job.address.startswith("inproc://")
        cluster.scale(2)
        assert cluster.observed == {"job-0", 0}
    assert job.status == "closed"


RUNS: list = []
RELEASE = threading.Event()


def slow(tag):
    RUNS.append(tag)
    RELEASE.wait(10)
    return tag


def test_retire_busy_worker_lets_its_task_finish_and_gives_it_nothing_new(poll):
    scheduler, worker, workers = specs("inproc://", n=2)
    with SpecCluster(workers=workers, scheduler=scheduler, worker=worker) as cluster, Client(cluster) as c:
        a0, a1 = cluster.workers[0].address, cluster.workers[1].address
        busy = c.submit(slow, "busy", workers=[a0], allow_other_workers=True)
        poll(lambda: RUNS == ["busy"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            retired = pool.submit(c.retire_workers, [a0])
            poll(lambda: cluster.scheduler.state.workers[a0].retiring)
            later = c.map(lambda i: i, range(5), pure=False)
            assert c.gather(later) == list(range(5))
            assert all(v == [a1] for v in c.who_has(later).values())  # nothing new for the retiring one
            assert not retired.done()  # it waits for the running task
            RELEASE.set()
            assert list(retired.result(timeout=10)) == [a0]
        assert busy.result() == "busy" and RUNS == ["busy"]  # finished there, not run again
        assert c.who_has([busy])[busy.key] == [a1]
