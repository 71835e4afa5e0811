"""The task stream: `Client.get_task_stream` and the `get_task_stream` context manager."""

from __future__ import annotations

import asyncio
import time
import warnings

import dask.config
import pytest
from task_functions import add, boom, inc

from shoal import Client, LocalCluster, get_task_stream


def test_records_have_the_distributed_fields(client):
    with get_task_stream(client) as ts:
        x = client.submit(inc, 1, pure=False)
        e = client.submit(boom, 1, pure=False)
        assert x.result() == 2
        with pytest.raises(ValueError):
            e.result()
    by_key = {r["key"]: r for r in ts.data}
    assert set(by_key) == {x.key, e.key}
    ok, err = by_key[x.key], by_key[e.key]
    assert ok["status"] == "OK" and ok["type"] == "int" and ok["typename"] == "int" and ok["nbytes"] > 0
    assert ok["worker"] in client.scheduler_info()["workers"]
    assert isinstance(ok["thread"], int)
    [compute] = ok["startstops"]
    assert compute["action"] == "compute" and compute["start"] <= compute["stop"]
    assert abs(compute["stop"] - time.time()) < 60  # wall clock, not monotonic
    assert err["status"] == "error" and "boom 1" in err["exception_text"]
    assert "boom" in err["traceback_text"]
    # the stimulus that ended each task on its worker (distributed's records carry it too)
    assert all(isinstance(r["stimulus_id"], str) and r["stimulus_id"] for r in (ok, err))


def test_context_manager_keeps_only_tasks_finished_inside(client):
    before = client.submit(inc, 10, pure=False)
    before.result()
    with get_task_stream(client) as ts:
        inside = client.map(inc, range(5), pure=False)
        client.gather(inside)
    after = client.submit(inc, 20, pure=False)
    after.result()
    assert sorted(r["key"] for r in ts.data) == sorted(f.key for f in inside)
    assert ts.figure is None


def test_transfers_are_recorded_on_the_dependent(client):
    a, b = sorted(client.scheduler_info()["workers"])
    with get_task_stream(client) as ts:
        x = client.submit(inc, 1, workers=[a], pure=False)
        y = client.submit(add, x, 1, workers=[b], pure=False)
        assert y.result() == 3
    [rec] = [r for r in ts.data if r["key"] == y.key]
    actions = [ss["action"] for ss in rec["startstops"]]
    assert actions == ["transfer", "compute"]
    transfer = rec["startstops"][0]
    assert transfer["source"] == a and transfer["start"] <= transfer["stop"] <= rec["startstops"][1]["start"]


def test_count_start_and_stop_filter(client):
    client.gather(client.map(inc, range(6), pure=False))
    assert len(client.get_task_stream(count=3)) == 3
    newest = client.get_task_stream(count=1)[0]
    everything = client.get_task_stream()
    assert everything[-1]["key"] == newest["key"]
    stops = [r["startstops"][-1]["stop"] for r in everything]
    assert stops == sorted(stops)
    assert client.get_task_stream(stop=0) == []
    assert client.get_task_stream(start=time.time() + 3600) == []
    assert len(client.get_task_stream(start="1 hour")) == len(everything)


def test_plot_save_writes_self_contained_escaped_html(client, tmp_path):
    key = "<script>alert(1)</script>-x"
    fn = tmp_path / "stream.html"
    with get_task_stream(client, plot="save", filename=str(fn)) as ts:
        client.submit(inc, 1, key=key).result()
    assert ts.figure is not None
    text = fn.read_text()
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # nothing to download
    records, figure = client.get_task_stream(count=5, plot="save", filename=str(tmp_path / "b.html"))
    assert len(records) == 5 and (tmp_path / "b.html").exists() and "<svg" in figure._repr_html_()
    records, figure = client.get_task_stream(count=1, plot=True)
    assert len(records) == 1 and figure.html.startswith("<!DOCTYPE html>")


def test_ring_buffer_length_is_configurable(cluster_kwargs):
    with dask.config.set({"shoal.worker.task-stream-length": 4}):
        with LocalCluster(**cluster_kwargs) as cl, Client(cl) as c:
            c.gather(c.map(inc, range(30)))
            with pytest.warns(UserWarning, match="task stream is incomplete"):
                records = c.get_task_stream()
    assert 0 < len(records) <= 4 * len(cl.workers or [0, 0])


def test_async_context_manager(cluster_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cl:
            async with Client(cl, asynchronous=True) as c:
                async with get_task_stream(c) as ts:
                    await c.gather(c.map(inc, range(3)))
                records = await c.get_task_stream()
        return ts.data, records

    data, records = asyncio.run(asyncio.wait_for(main(), 30))
    assert len(data) == 3 and len(records) == 3


def test_records_the_ring_buffer_dropped_are_reported(cluster_kwargs):
    with dask.config.set({"shoal.worker.task-stream-length": 4}):
        with LocalCluster(**cluster_kwargs) as cl, Client(cl) as c:
            with pytest.warns(UserWarning, match=r"task stream is incomplete: \d+ records .* newest 4") as seen:
                with get_task_stream(c) as ts:
                    c.gather(c.map(inc, range(30)))
            assert seen[0].filename == __file__  # points at the user's `with` line
            assert 0 < len(ts.data) <= 8
            with pytest.warns(UserWarning, match="task stream is incomplete") as seen:
                records = c.get_task_stream()
            assert seen[0].filename == __file__ and 0 < len(records) <= 8
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert len(c.get_task_stream(count=2)) == 2  # the newest two are all there
                with get_task_stream(c) as ts:
                    c.submit(inc, 100).result()
                assert len(ts.data) == 1


def tag_rows(n):
    from shoal import get_worker

    worker = get_worker()
    worker.state.tasks[worker.get_current_task()].metadata.update(rows=n, note=object())
    return n


def test_records_carry_the_tasks_metadata(client):
    with get_task_stream(client) as ts:
        tagged = client.submit(tag_rows, 7, pure=False)
        plain = client.submit(inc, 1, pure=False)
        client.gather([tagged, plain])
    by_key = {r["key"]: r for r in ts.data}
    meta = by_key[tagged.key]["metadata"]
    assert meta["rows"] == 7 and meta["note"].startswith("<object object")  # not msgpack-able: its repr
    assert by_key[plain.key]["metadata"] == {}


def test_task_stream_plugin_collects_on_the_scheduler(cluster_kwargs):
    from shoal.diagnostics.task_stream import TaskStreamPlugin, rectangles

    with LocalCluster(**cluster_kwargs) as cl, Client(cl) as c:
        c.submit(inc, 0, pure=False).result()  # before registration: still in the workers' buffers
        c.register_plugin(TaskStreamPlugin())
        plugin = cl.scheduler.plugins["task-stream"]
        assert isinstance(plugin, TaskStreamPlugin) and plugin.scheduler is cl.scheduler
        futures = c.map(inc, range(10), pure=False)
        bad = c.submit(boom, 1, pure=False)
        c.gather(futures)
        with pytest.raises(ValueError):
            bad.result()
        c.sync(plugin.flush)
        keys = [r["key"] for r in plugin.buffer]
        assert set(keys) >= {f.key for f in futures} | {bad.key} and plugin.index == len(plugin.buffer) == 12
        assert [r["status"] for r in plugin.buffer if r["key"] == bad.key] == ["error"]
        assert plugin.collect(count=3) == list(plugin.buffer)[-3:]
        assert plugin.collect(start_index=plugin.index - 2) == list(plugin.buffer)[-2:]
        assert plugin.collect(stop=0) == [] and len(plugin.collect(start="1 hour")) == 12
        rects = plugin.rectangles(0)
        assert len(rects["key"]) == 12 and rects == rectangles(list(plugin.buffer))
        assert rects["color"][keys.index(bad.key)] == "black"
        assert set(rects["worker"]) <= set(c.scheduler_info()["workers"])
        # the records stay on the scheduler once their worker is gone
        cl.scale(1)
        c.submit(inc, 100, pure=False).result()
        c.sync(plugin.flush)
        assert len(plugin.buffer) == 13 and set(keys) <= {r["key"] for r in plugin.buffer}
        c.unregister_scheduler_plugin("task-stream")


def test_task_stream_plugin_added_on_the_scheduler_as_in_distributed(cluster_kwargs):
    from shoal.diagnostics.task_stream import TaskStreamPlugin

    with LocalCluster(**cluster_kwargs) as cl, Client(cl) as c:
        plugin = TaskStreamPlugin(cl.scheduler, maxlen=3)  # distributed's way: built with its scheduler
        c.sync(_add, cl.scheduler, plugin)
        c.gather(c.map(inc, range(5), pure=False))
        c.sync(plugin.flush)
        assert len(plugin.buffer) == 3 and plugin.index == 5  # bounded, every record counted
        with pytest.warns(UserWarning, match="overwriting"):
            c.sync(_add, cl.scheduler, TaskStreamPlugin(cl.scheduler))
        c.sync(_add, cl.scheduler, TaskStreamPlugin(cl.scheduler), idempotent=True)
        c.sync(_remove, cl.scheduler, "task-stream")
        assert "task-stream" not in cl.scheduler.plugins
        with pytest.raises(ValueError, match="Could not find plugin"):
            c.sync(_remove, cl.scheduler, "task-stream")


async def _add(scheduler, plugin, **kwargs):
    scheduler.add_plugin(plugin, **kwargs)


async def _remove(scheduler, name):
    scheduler.remove_plugin(name)
