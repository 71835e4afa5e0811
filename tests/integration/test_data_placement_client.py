"""`Client.replicate`, `rebalance`, `nbytes`, `processing`, `call_stack` on in-process clusters."""

from __future__ import annotations

import pytest
from dask.sizeof import sizeof
from task_functions import inc

from shoal import Event, wait


def payload(i, size=10_000):
    return bytes([i % 256]) * size


def blocked(name):
    Event(name).wait()
    return name


def empty(client, poll):
    """Wait until data of earlier tests (released when their client closed) is gone."""
    poll(lambda: not any(client.has_what().values()))


def test_replicate_to_all_workers_then_back_to_one(client):
    workers = sorted(client.nthreads())
    x = client.submit(payload, 1, workers=[workers[0]], pure=False)
    client.replicate([x])
    assert sorted(client.who_has([x])[x.key]) == workers
    assert x.key in client.has_what()[workers[1]]
    client.replicate([x], n=1)
    assert len(client.who_has([x])[x.key]) == 1
    assert x.result() == payload(1)


def test_replicate_n_and_workers(client):
    workers = sorted(client.nthreads())
    futures = client.map(payload, range(4), workers=[workers[0]], pure=False)
    client.replicate(futures, n=2)
    for holders in client.who_has(futures).values():
        assert sorted(holders) == workers
    client.replicate(futures, n=1, workers=[workers[1]])  # counts only replicas on workers[1]
    assert all(len(h) == 2 for h in client.who_has(futures).values())
    assert client.gather(futures) == [payload(i) for i in range(4)]
    with pytest.raises(ValueError, match="at least 1"):
        client.replicate(futures, n=0)


def test_replicate_failed_future_raises(client):
    f = client.submit(int, "not a number")
    with pytest.raises(ValueError):
        client.replicate([f])


def test_rebalance_evens_memory_and_loses_nothing(client, poll):
    empty(client, poll)
    workers = sorted(client.nthreads())
    futures = client.map(payload, range(10), workers=[workers[0]], pure=False)
    wait(futures)
    assert all(h == [workers[0]] for h in client.who_has(futures).values())
    client.rebalance(futures)
    has = client.has_what()
    counts = {w: len([k for k in has[w] if k in {f.key for f in futures}]) for w in workers}
    assert counts == {workers[0]: 5, workers[1]: 5}
    who = client.who_has(futures)
    assert all(len(h) == 1 for h in who.values())  # moved, not copied
    assert client.gather(futures) == [payload(i) for i in range(10)]


def test_rebalance_everything_and_restricted_to_workers(client, poll):
    empty(client, poll)
    workers = sorted(client.nthreads())
    futures = client.map(payload, range(6), workers=[workers[1]], pure=False)
    wait(futures)
    client.rebalance(workers=[workers[1]])  # one worker: nothing to do
    assert all(h == [workers[1]] for h in client.who_has(futures).values())
    client.rebalance()
    assert {len(v) for v in client.has_what().values()} == {3}
    assert client.gather(futures) == [payload(i) for i in range(6)]


def test_nbytes(client, poll):
    empty(client, poll)
    x = client.submit(inc, 1)
    y = client.submit(payload, 2, key="payload-0123456789abcdef0123456789abcdef")
    wait([x, y])
    assert client.nbytes(summary=False) == {x.key: sizeof(2), y.key: sizeof(payload(2))}
    assert client.nbytes() == {"inc": sizeof(2), "payload": sizeof(payload(2))}
    assert client.nbytes(keys=[x], summary=False) == {x.key: sizeof(2)}


def test_processing_and_call_stack(client, poll):
    f = client.submit(blocked, "call-stack-ev")
    poll(lambda: any(f.key in keys for keys in client.processing().values()))
    stacks = poll(lambda: client.call_stack())
    [(worker, by_key)] = stacks.items()
    assert list(by_key) == [f.key]
    frames = "".join(by_key[f.key])
    assert "blocked" in frames and "wait" in frames
    assert client.call_stack(keys=["nope"]) == {}
    assert list(client.call_stack([f]).get(worker, {})) == [f.key]
    Event("call-stack-ev").set()
    f.result()
    poll(lambda: client.call_stack() == {})


def test_metadata_nested_paths(client):
    client.set_metadata("a", 1)
    assert client.get_metadata("a") == 1
    assert client.get_metadata(["a"]) == 1
    client.set_metadata(["x", "y", "z"], {"deep": True})
    assert client.get_metadata("x") == {"y": {"z": {"deep": True}}}
    assert client.get_metadata(["x", "y", "z", "deep"]) is True
    client.set_metadata(["a", "b"], 2)  # a non-dict level is replaced
    assert client.get_metadata("a") == {"b": 2}
    with pytest.raises(KeyError):
        client.get_metadata("missing")
    with pytest.raises(KeyError):
        client.get_metadata(["x", "nope", "z"])
    with pytest.raises(KeyError):
        client.get_metadata(["a", "b", "c"])  # 2 is not a mapping
    assert client.get_metadata(["x", "nope"], default=None) is None
    assert client.get_metadata("missing", default=7) == 7
    client.set_metadata(("tuple", 1), "tuple key")  # a tuple is one key, not a path
    assert client.get_metadata(("tuple", 1)) == "tuple key"


def test_processing_and_call_stack_are_lists(client, poll):
    f = client.submit(blocked, "lists-ev", pure=False)
    poll(lambda: any(f.key in keys for keys in client.processing().values()))
    assert all(type(v) is list for v in client.processing().values())
    stacks = poll(lambda: client.call_stack([f]))
    assert all(type(frames) is list for by_key in stacks.values() for frames in by_key.values())
    Event("lists-ev").set()
    f.result()
