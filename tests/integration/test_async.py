"""Asynchronous clients and clusters, driven with ``asyncio.run`` from plain test functions."""

from __future__ import annotations

import asyncio

import pytest
from task_functions import inc

from shoal import Client, Future, LocalCluster, as_completed, wait

ASYNC_CLUSTERS = {
    "inproc": dict(n_workers=2, threads_per_worker=1, processes=False),
    "tcp": dict(n_workers=2, threads_per_worker=1, processes=False, scheduler_port=0, protocol="tcp://"),
}


def div(x, y):
    return x / y


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(params=sorted(ASYNC_CLUSTERS))
def async_kwargs(request):
    return ASYNC_CLUSTERS[request.param]


def test_async_cluster_and_client(async_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **async_kwargs) as cl:
            async with Client(cl, asynchronous=True) as c:
                assert c.asynchronous
                x = c.submit(inc, 1)
                assert isinstance(x, Future)
                assert await x == 2
                assert await x.result() == 2
                y = c.submit(inc, x)
                assert await c.gather([x, y]) == [2, 3]
                assert await c.gather({"a": x, "b": (y, 5)}) == {"a": 2, "b": (3, 5)}

                futs = c.map(inc, range(6))
                seen = []
                async for f in as_completed(futs):
                    seen.append(await f)
                assert sorted(seen) == [1, 2, 3, 4, 5, 6]

                pairs = []
                async for f, r in as_completed(c.map(inc, range(3)), with_results=True):
                    pairs.append(r)
                assert sorted(pairs) == [1, 2, 3]

                s = await c.scatter([10, 20, 30])
                assert all(isinstance(f, Future) for f in s)
                assert await c.gather(s) == [10, 20, 30]
                one = await c.scatter(7)
                assert await c.submit(inc, one) == 8

                bad = c.submit(div, 1, 0)
                with pytest.raises(ZeroDivisionError):
                    await bad
                assert isinstance(await bad.exception(), ZeroDivisionError)
            assert c.status == "closed"
            assert cl.status == "running"

    run(main())


def test_await_client_and_close(async_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **async_kwargs) as cl:
            c = await Client(cl, asynchronous=True)
            try:
                assert c.status == "running"
                assert await c.submit(inc, 10) == 11
                res = await c.run(inc, 1)
                assert set(res.values()) == {2} and len(res) == 2
                done, not_done = await wait(c.map(inc, range(3)))
                assert len(done) == 3 and not not_done
            finally:
                await c.close()
            assert c.status == "closed"

    run(main())


def test_async_client_owns_cluster():
    async def main():
        async with Client(n_workers=1, threads_per_worker=1, processes=False, asynchronous=True) as c:
            assert c.cluster is not None
            cl = c.cluster
            assert await c.submit(inc, 1) == 2
        assert cl.status == "closed"

    run(main())
