"""Coordination primitives across real worker processes."""

from __future__ import annotations

import os
import signal
import time

import pytest
from task_functions import inc

from shoal import Client, Event, Future, LocalCluster, Lock, Semaphore, Variable

pytestmark = pytest.mark.system


def locked_increments(path, n):
    """Read-modify-write a counter file `n` times, each under the cluster-wide lock."""
    lock = Lock("file-lock")
    for _ in range(n):
        with lock:
            with open(path) as f:
                value = int(f.read())
            time.sleep(0.001)  # widen the race window: without the lock updates get lost
            with open(path, "w") as f:
                f.write(str(value + 1))
    return os.getpid()


def test_lock_no_lost_update(client, tmp_path):
    path = tmp_path / "counter"
    path.write_text("0")
    futs = client.map(locked_increments, [str(path)] * 20, [5] * 20, pure=False)
    pids = client.gather(futs)
    assert int(path.read_text()) == 100
    assert len(set(pids)) >= 1
    assert not Lock("file-lock").locked()


def hold_lease(sem):
    assert sem.acquire(timeout=30)
    Variable("holder-pid").set(os.getpid())
    Event("never").wait()  # hold the lease until the process dies


def test_lease_freed_when_holder_process_killed(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
        sem = Semaphore(1, name="killed-holder")
        workers = c.scheduler_info()["workers"]
        victim = next(iter(workers))
        fut = c.submit(hold_lease, sem, workers=[victim], pure=False)
        pid = Variable("holder-pid").get(timeout=30)
        assert pid == workers[victim]["pid"]
        assert sem.get_value() == 1
        assert sem.acquire(timeout=0) is False
        os.kill(pid, signal.SIGKILL)
        poll(lambda: sem.get_value() == 0, timeout=30)
        assert sem.acquire(timeout=5)
        sem.release()
        del fut


def wait_event(name):
    return Event(name).wait(30), os.getpid()


def set_event(name):
    Event(name).set()
    return os.getpid()


def test_event_across_task_processes(client):
    name = "proc-event"
    # one waiter per worker would leave no thread for the setter (1 thread each)
    waiter = client.submit(wait_event, name, pure=False)
    assert not waiter.done()
    setter = client.submit(set_event, name, pure=False)
    ok, waiter_pid = waiter.result(timeout=30)
    assert ok is True
    assert waiter_pid != os.getpid()
    assert setter.result() != os.getpid()
    Event(name).clear()


def test_variable_keeps_future_alive(cluster, client, poll):
    with Client(cluster, set_as_default=False) as producer:
        f = producer.submit(inc, 41, key="var-alive-key")
        assert f.result() == 42
        Variable("var-alive", client=producer).set(f)
        del f
    # the producing client and its future are gone: only the variable holds the key
    poll(lambda: "var-alive-key" in client.who_has() and client.who_has()["var-alive-key"])
    g = Variable("var-alive").get(timeout=10)
    assert isinstance(g, Future)
    assert g.result() == 42

    def read_in_task():
        return Variable("var-alive").get(timeout=10).result()

    assert client.submit(read_in_task, pure=False).result() == 42
    del g
    Variable("var-alive").delete()
    poll(lambda: not client.who_has().get("var-alive-key"), timeout=10)
