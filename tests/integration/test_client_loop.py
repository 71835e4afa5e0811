"""`Client.loop` offers the loop methods distributed's client loop has (issue 17,
item 15): code that schedules callbacks on `client.loop` keeps working."""

from __future__ import annotations

import asyncio
import threading

from task_functions import inc

from shoal import Client, LocalCluster


def test_add_callback_from_another_thread(client):
    ran = threading.Event()
    seen = {}

    def callback(x, y=None):
        seen["args"] = (x, y)
        seen["on_loop"] = asyncio.get_running_loop() is client.loop.asyncio_loop
        ran.set()

    client.loop.add_callback(callback, 1, y=2)
    assert ran.wait(10)
    assert seen == {"args": (1, 2), "on_loop": True}


def test_add_callback_runs_coroutine_functions(client):
    done = threading.Event()

    async def work():
        await asyncio.sleep(0)
        done.set()

    client.loop.add_callback(work)
    assert done.wait(10)


def test_call_later_and_remove_timeout(client):
    fired = threading.Event()
    cancelled = threading.Event()
    client.loop.call_later(0.01, fired.set)
    handle = client.loop.call_later(0.05, cancelled.set)
    client.loop.remove_timeout(handle)
    assert fired.wait(10)
    marker = threading.Event()
    client.loop.call_later(0.2, marker.set)  # fires after the cancelled one would have
    assert marker.wait(10)
    assert not cancelled.is_set()


def test_asyncio_loop_and_delegation(client):
    loop = client.loop
    assert isinstance(loop.asyncio_loop, asyncio.AbstractEventLoop)
    assert loop.is_running() and not loop.is_closed()
    assert loop == loop.asyncio_loop
    fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=5), loop.asyncio_loop)
    assert fut.result(10) == 5
    assert isinstance(loop.time(), float)
    assert loop.run_sync(lambda: asyncio.sleep(0, result=7), timeout=10) == 7


def test_add_future_calls_back_with_the_future(client):
    got = threading.Event()
    box = []
    cf = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=3), client.loop.asyncio_loop)

    def cb(f):
        box.append(f.result())
        got.set()

    client.loop.add_future(cf, cb)
    assert got.wait(10) and box == [3]


def test_a_client_loop_can_start_another_client_and_cluster():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cl:
        with Client(cl, set_as_default=False) as c:
            with Client(cl, loop=c.loop, set_as_default=False) as c2:
                assert c2.loop == c.loop
                assert c2.submit(inc, 1).result() == 2


def test_async_client_loop_on_its_own_loop():
    async def main():
        async with LocalCluster(n_workers=1, processes=False, asynchronous=True, dashboard_address=":0") as cl:
            async with Client(cl, asynchronous=True) as c:
                assert c.loop.asyncio_loop is asyncio.get_running_loop()
                fired = asyncio.Event()
                c.loop.add_callback(fired.set)
                await asyncio.wait_for(fired.wait(), 10)
                later = asyncio.Event()
                c.loop.call_later(0.01, later.set)
                await asyncio.wait_for(later.wait(), 10)

    asyncio.run(main())
