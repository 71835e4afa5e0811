"""Actors across real worker processes: calls go straight to the worker process that
holds the actor, from the client and from tasks in other processes."""

from __future__ import annotations

import gc
import os
import signal

import pytest
from actor_classes import Counter, holds_actor, increment_many

from shoal import Actor, CancelledError, Client, LocalCluster

pytestmark = pytest.mark.system


def _holders(client, key):
    return [addr for addr, held in client.run(holds_actor, key).items() if held]


def test_counter_survives_many_calls(client):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    assert isinstance(counter, Actor)
    for i in range(1, 1001):
        assert counter.increment().result() == i
    assert counter.n == 1000
    assert _holders(client, future.key) == list(client.who_has(future)[future.key])


def test_method_error_and_attributes(client):
    counter = client.submit(Counter, 5, actor=True).result()
    with pytest.raises(ZeroDivisionError, match="from a process"):
        counter.fail("from a process").result()
    assert counter.n == 5 and counter.label == "counter from 5" and counter.doubled == 10
    assert counter.ainc(2).result() == 7


def test_actor_used_from_tasks_on_every_worker(client):
    workers = list(client.scheduler_info()["workers"])
    counter = client.submit(Counter, actor=True, workers=[workers[0]]).result()
    futures = [
        client.submit(increment_many, counter, 100, workers=[w], pure=False) for w in workers for _ in range(2)
    ]
    assert max(client.gather(futures)) == 400
    assert counter.n == 400


def test_actor_calls_actor_in_another_process(client):
    workers = list(client.scheduler_info()["workers"])
    a = client.submit(Counter, actor=True, workers=[workers[0]]).result()
    b = client.submit(Counter, actor=True, workers=[workers[1]]).result()
    assert a.bump_other(b, 3).result() == [1, 2, 3]
    assert b.n == 3


def test_actor_freed_when_released(client, poll):
    future = client.submit(Counter, actor=True)
    key = future.key
    counter = future.result()
    counter.increment().result()
    assert _holders(client, key)
    del future, counter
    gc.collect()
    poll(lambda: not _holders(client, key))


def test_losing_the_actors_worker(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        future = client.submit(Counter, actor=True)
        counter = future.result()
        assert counter.increment().result() == 1
        pending = counter.wait_for("never-set", 60)  # in flight when the worker dies
        home = client.who_has(future)[future.key][0]
        os.kill(client.run(os.getpid)[home], signal.SIGKILL)
        with pytest.raises(OSError, match="Actor's worker"):
            pending.result(timeout=30)
        poll(lambda: future.status == "cancelled", timeout=30)
        with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
            counter.increment()
        with pytest.raises(CancelledError):
            future.result()
        # the cluster goes on: a new actor lives on the surviving worker
        assert client.submit(Counter, actor=True).result().increment().result() == 1
