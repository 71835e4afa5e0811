"""Actors: stateful objects on one worker, called through `Actor` proxies."""

from __future__ import annotations

import asyncio
import gc
import pickle

import pytest
from actor_classes import Broken, Counter, holds_actor, increment_many, read_n

import shoal
from shoal import Actor, ActorFuture, BaseActorFuture, Client, Event, LocalCluster, as_completed


def _held_anywhere(client, key):
    return any(client.run(holds_actor, key).values())


def test_top_level_names():
    assert shoal.Actor is Actor and shoal.ActorFuture is ActorFuture and shoal.BaseActorFuture is BaseActorFuture
    assert issubclass(ActorFuture, BaseActorFuture)
    from shoal.actor import Actor as A2

    assert A2 is Actor


def test_submit_actor_returns_proxy_and_keeps_state(client, poll):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    assert isinstance(counter, Actor)
    assert repr(counter) == f"<Actor: Counter, key={future.key}>"
    assert counter.key == future.key
    assert future.key.startswith("Counter-")
    for i in range(1, 1001):
        assert counter.increment().result() == i
    assert counter.n == 1000
    assert _held_anywhere(client, future.key)


def test_actor_forces_impure_keys(client):
    a = client.submit(Counter, actor=True)
    b = client.submit(Counter, actor=True)
    c = client.submit(Counter, actors=True)
    assert len({a.key, b.key, c.key}) == 3
    a.result().increment().result()
    assert b.result().n == 0


def test_calls_run_in_order_without_waiting(client):
    counter = client.submit(Counter, actor=True).result()
    futures = [counter.increment() for _ in range(300)]
    assert all(isinstance(f, ActorFuture) for f in futures)
    assert [f.result() for f in futures] == list(range(1, 301))
    assert futures[0].done() and repr(futures[0]) == "<ActorFuture>"
    assert counter.n == 300  # an attribute read sees every call sent before it


def test_arguments_and_keywords(client):
    counter = client.submit(Counter, 10, actor=True).result()
    assert counter.add(1, 2, c=3).result() == 16
    assert counter.add(a=4).result() == 20
    assert counter.label == "counter from 10"


def test_method_error_keeps_type_and_message(client):
    counter = client.submit(Counter, actor=True).result()
    fut = counter.fail("nope")
    with pytest.raises(ZeroDivisionError, match="nope"):
        fut.result()
    assert fut.done()
    with pytest.raises(ZeroDivisionError, match="nope"):
        fut.result()  # the outcome stays
    assert counter.increment().result() == 1  # the actor survives its method's error


def test_attributes(client):
    counter = client.submit(Counter, 3, actor=True).result()
    assert counter.n == 3  # instance attribute shadowing a class attribute
    assert counter.label == "counter from 3"  # set on the instance only
    assert counter.doubled == 6  # a property runs remotely
    with pytest.raises(AttributeError):
        _ = counter.missing_attribute
    with pytest.raises(AttributeError):
        _ = counter._private_missing  # never sent: not on the class, private
    assert "increment" in dir(counter) and "ainc" in dir(counter)


def test_methods_run_on_the_actor_thread_of_its_worker(client):
    future = client.submit(Counter, actor=True)
    counter = future.result()
    assert counter.thread_name().result() == "shoal-actor"
    assert counter.worker_address().result() in client.who_has(future)[future.key]


def test_actor_as_task_argument(client):
    counter = client.submit(Counter, actor=True).result()
    futures = [client.submit(increment_many, counter, 50, pure=False) for _ in range(4)]
    results = client.gather(futures)
    assert max(results) == 200
    assert counter.n == 200
    assert client.submit(read_n, counter).result() == 200


def test_actor_calls_actor(client):
    workers = list(client.scheduler_info()["workers"])
    a = client.submit(Counter, actor=True, workers=[workers[0]]).result()
    same = client.submit(Counter, actor=True, workers=[workers[0]]).result()
    other = client.submit(Counter, actor=True, workers=[workers[1]]).result()
    # an actor on the same worker is called directly (the actor thread would wait on itself)
    assert a.bump_other(same, 3).result() == [1, 2, 3]
    # one on another worker through the network
    assert a.bump_other(other, 2).result() == [1, 2]
    assert same.n == 3 and other.n == 2


def test_async_methods(client):
    counter = client.submit(Counter, actor=True).result()
    assert counter.ainc(5).result() == 5
    assert counter.increment().result() == 6


def test_result_timeout(client):
    counter = client.submit(Counter, actor=True).result()
    event = Event("actor-release")
    fut = counter.wait_for("actor-release")
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.05)
    assert not fut.done()
    event.set()
    assert fut.result() is True


def test_map_actors(client):
    futures = client.map(Counter, [0, 10, 20], actors=True)
    counters = client.gather(futures)
    assert all(isinstance(c, Actor) for c in counters)
    assert [c.increment().result() for c in counters] == [1, 11, 21]
    assert len({f.key for f in futures}) == 3


def test_compute_actors(client):
    import dask

    counter = client.compute(dask.delayed(Counter)(7), actors=True).result()
    assert isinstance(counter, Actor)
    assert counter.increment().result() == 8


def test_proxy_keeps_actor_alive_and_release_frees_it(client, poll):
    future = client.submit(Counter, actor=True)
    key = future.key
    counter = future.result()
    del future
    gc.collect()
    assert counter.increment().result() == 1  # the proxy alone keeps the actor
    assert _held_anywhere(client, key)
    del counter
    gc.collect()
    poll(lambda: not _held_anywhere(client, key))


def test_future_keeps_actor_alive(client, poll):
    future = client.submit(Counter, actor=True)
    key = future.key
    future.result().increment().result()
    gc.collect()
    assert future.result().n == 1
    del future
    gc.collect()
    poll(lambda: not _held_anywhere(client, key))


def test_proxy_pickles_to_a_working_proxy(client):
    counter = client.submit(Counter, actor=True).result()
    again = pickle.loads(pickle.dumps(counter))
    assert again.key == counter.key and again.increment().result() == 1
    assert counter.n == 1


def test_async_client(cluster_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cluster, Client(cluster, asynchronous=True) as client:
                counter = await client.submit(Counter, actor=True)
                assert isinstance(counter, Actor)
                fut = counter.increment()
                assert isinstance(fut, ActorFuture)
                assert await fut == 1
                assert await counter.ainc(2) == 3
                assert await counter.n == 3  # attribute reads are awaitable here
                with pytest.raises(ZeroDivisionError, match="async"):
                    await counter.fail("async")
                futures = [counter.increment() for _ in range(20)]
                assert [await f for f in futures] == list(range(4, 24))
                with pytest.raises(RuntimeError, match="await"):
                    counter.wait_for("never-set", 1).result()  # would block the loop

    asyncio.run(asyncio.wait_for(main(), 60))


def test_as_completed_accepts_actor_futures(client):
    counter = client.submit(Counter, actor=True).result()
    futures = [counter.increment() for _ in range(10)]
    assert sorted(f.result() for f in as_completed(futures)) == list(range(1, 11))
    results = dict(as_completed([counter.increment(), counter.fail("x")], with_results=True, raise_errors=False))
    assert sorted(map(type, results.values()), key=str) == [int, tuple]
    with pytest.raises(TypeError, match="must be a future"):
        as_completed([1])


def test_failing_constructor_is_a_task_error(client):
    future = client.submit(Broken, actor=True)
    with pytest.raises(ValueError, match="cannot build this actor"):
        future.result()
    assert future.status == "error"


def test_calls_from_several_threads_all_count(client):
    from concurrent.futures import ThreadPoolExecutor

    counter = client.submit(Counter, actor=True).result()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: [counter.increment().result() for _ in range(50)], range(4)))
    assert sorted(x for r in results for x in r) == list(range(1, 201))
    for r in results:  # each thread's calls ran in the order it made them
        assert r == sorted(r)
