"""`Client.get_executor`: a standard `concurrent.futures.Executor` on the cluster."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf

import pytest
from task_functions import add, boom, inc

from shoal import Client, Event, LocalCluster


def test_submit_returns_standard_futures(client):
    with client.get_executor() as ex:
        futures = [ex.submit(inc, i) for i in range(5)]
        assert all(isinstance(f, cf.Future) for f in futures)
        _, not_done = cf.wait(futures, timeout=10)
        assert not not_done
        assert sorted(f.result() for f in cf.as_completed(futures)) == [1, 2, 3, 4, 5]


def test_submit_error_travels(client):
    ex = client.get_executor()
    f = ex.submit(boom, 3)
    with pytest.raises(ValueError, match="boom 3"):
        f.result(timeout=10)
    assert isinstance(f.exception(), ValueError)


def test_map_in_order_with_chunksize(client):
    ex = client.get_executor()
    assert list(ex.map(inc, range(10))) == list(range(1, 11))
    assert list(ex.map(add, range(7), range(10, 17), chunksize=3)) == [a + b for a, b in zip(range(7), range(10, 17))]
    assert list(ex.map(inc, [])) == []
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(inc, [1], chunksize=0)


def test_map_timeout(client):
    ex = client.get_executor()
    it = ex.map(_wait_event, ["executor-map-timeout"], timeout="200ms")
    with pytest.raises(TimeoutError):
        next(it)  # the task waits for an event nobody has set yet
    Event("executor-map-timeout").set()


def _wait_event(name):
    Event(name).wait()
    return name


def test_unsupported_kwargs_named(client):
    with pytest.raises(TypeError, match=r"unsupported arguments to ClientExecutor: \['foo'\]"):
        client.get_executor(foo=1, pure=True)


def where_am_i(_):
    from shoal import get_worker

    return get_worker().address


def test_kwargs_are_used(client):
    worker = max(client.nthreads())
    ex = client.get_executor(workers=[worker], retries=0)
    assert {ex.submit(where_am_i, i).result(timeout=10) for i in range(4)} == {worker}
    assert set(ex.map(where_am_i, range(4), chunksize=2)) == {worker}


def test_submit_after_shutdown(client):
    ex = client.get_executor()
    f = ex.submit(inc, 1)
    ex.shutdown(wait=True)
    assert f.done() and f.result() == 2
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(inc, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(inc, [1])


def test_shutdown_without_wait_cancels_pending(client):
    ex = client.get_executor()
    f = ex.submit(_wait_event, "executor-shutdown")
    ex.shutdown(wait=False)
    assert f.cancelled()
    done, _ = cf.wait([f], timeout=5)  # a cancelled future counts as done for `wait`
    assert done == {f}
    Event("executor-shutdown").set()


def test_cancel_standard_future_cancels_cluster_future(client, poll):
    ex = client.get_executor()
    f = ex.submit(_wait_event, "executor-cancel")
    inner = f.dask_future
    assert f.cancel()
    poll(lambda: inner.cancelled())
    Event("executor-cancel").set()


def test_executor_with_async_client():
    async def main():
        async with (
            LocalCluster(n_workers=1, processes=False, asynchronous=True) as cl,
            Client(cl, asynchronous=True) as c,
        ):
            ex = c.get_executor()
            assert await asyncio.wrap_future(ex.submit(inc, 41)) == 42
            assert list(ex.map(inc, [])) == []

    asyncio.run(asyncio.wait_for(main(), 30))


def test_pure_like_the_client(client):
    shared = client.get_executor()
    a, b = shared.submit(inc, 5), shared.submit(inc, 5)
    assert a.dask_future.key == b.dask_future.key  # the client's default: pure
    impure = client.get_executor(pure=False)
    c, d = impure.submit(inc, 5), impure.submit(inc, 5)
    assert c.dask_future.key != d.dask_future.key
    assert {f.result(timeout=10) for f in (a, b, c, d)} == {6}
