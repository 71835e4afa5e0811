"""`get_task_metadata`: final states and metadata of the tasks submitted inside a block."""

from __future__ import annotations

import asyncio

import dask
import pytest
from task_functions import boom, inc

from shoal import Client, LocalCluster, get_task_metadata, wait


def test_states_and_metadata_of_tasks_submitted_inside(client, cluster, poll):
    before = client.submit(inc, 100)
    before.result()
    with get_task_metadata() as tasks:
        f = client.submit(inc, 1)
        e = client.submit(boom, 1)
        wait([f, e])
    assert tasks.state == {f.key: "memory", e.key: "erred"}
    assert tasks.metadata[f.key]["type"] == "int" and tasks.metadata[f.key]["nbytes"] > 0
    assert tasks.metadata[f.key]["workers"] == sorted(client.who_has([f])[f.key])
    assert "boom 1" in tasks.metadata[e.key]["exception_text"]
    poll(lambda: not cluster.scheduler.state.observers)  # the watch is gone


def test_collections_and_tasks_forgotten_before_exit(client):
    x = dask.delayed(inc)(1)
    with get_task_metadata() as tasks:
        assert x.compute() == 2  # its future is released at once: the task is forgotten
    assert tasks.state == {x.key: "memory"}


def test_nested_blocks_collect_independently(client):
    with get_task_metadata() as outer:
        a = client.submit(inc, 1)
        a.result()
        with get_task_metadata() as inner:
            b = client.submit(inc, 2)
            b.result()
    assert set(outer.state) == {a.key, b.key}
    assert set(inner.state) == {b.key}


def test_unfinished_tasks_are_left_out(client):
    with get_task_metadata() as tasks:
        f = client.submit(inc, 1, workers=["no-such-worker"])
    assert tasks.state == {} and f.status == "pending"


def test_async(cluster_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cl:
            async with Client(cl, asynchronous=True) as c:
                async with get_task_metadata() as tasks:
                    f = c.submit(inc, 1)
                    await f
        return tasks, f.key

    tasks, key = asyncio.run(asyncio.wait_for(main(), 30))
    assert tasks.state == {key: "memory"}


def test_no_client():
    from shoal.client.client import _current_client

    if _current_client.get() is not None:
        pytest.skip("a client is current")
    with pytest.raises(ValueError, match="No global client"):
        with get_task_metadata():
            pass
