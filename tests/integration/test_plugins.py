"""Worker and scheduler plugins: `Client.register_plugin`, `unregister_*_plugin`, hooks."""

from __future__ import annotations

import logging
import uuid

import plugin_classes as pc
import pytest
from task_functions import inc

from shoal import Client, LocalCluster, SchedulerPlugin, WorkerPlugin
from shoal.diagnostics import plugin as plugin_module


@pytest.fixture
def small(cluster_kwargs):
    """A one-worker cluster of its own (plugins and scaling stay out of the shared one)."""
    kwargs = dict(cluster_kwargs, n_workers=1)
    with LocalCluster(**kwargs) as cl, Client(cl) as c:
        yield cl, c


def test_import_paths():
    import shoal

    assert shoal.WorkerPlugin is plugin_module.WorkerPlugin is WorkerPlugin
    assert shoal.SchedulerPlugin is plugin_module.SchedulerPlugin is SchedulerPlugin
    assert shoal.NannyPlugin is plugin_module.NannyPlugin
    assert shoal.UploadFile is plugin_module.UploadFile


def test_register_plugin_rejects_classes_and_duck_types(client):
    with pytest.raises(TypeError, match="instance"):
        client.register_plugin(pc.RecordingWorkerPlugin)

    class Duck:
        def setup(self, worker):
            pass

    with pytest.raises(TypeError, match="duck-typed"):
        client.register_plugin(Duck())


def test_worker_plugin_current_and_future_workers(small, poll):
    cl, c = small
    [first] = c.nthreads()
    assert c.register_plugin(pc.RecordingWorkerPlugin("a"), name="rec-a") == {first: {"status": "OK"}}
    assert c.run(pc.plugin_names) == {first: ["rec-a"]}
    cl.scale(3)
    c.wait_for_workers(3)
    logs = c.run(pc.plugin_log)
    assert len(logs) == 3
    assert all(log[0] == ("a", "setup") for log in logs.values())  # each set it up once, first
    # a joining worker set the plugin up before it got any task
    seen = c.gather(c.map(pc.plugin_log_in_task, range(12), pure=False))
    assert all(("a", "setup") in log for log in seen)


def test_worker_plugin_transitions(small, poll):
    _, c = small
    c.register_plugin(pc.RecordingWorkerPlugin("t"), name="rec-t")
    fut = c.submit(inc, 1, key="plugin-inc-1")
    assert fut.result() == 2
    [addr] = c.nthreads()

    def moves():
        return [e[3:] for e in c.run(pc.plugin_log)[addr] if e[1] == "transition" and e[2] == "plugin-inc-1"]

    poll(lambda: ("executing", "memory") in moves())
    assert moves()[:3] == [("released", "ready"), ("ready", "executing"), ("executing", "memory")]
    del fut
    poll(lambda: ("memory", "released") in moves())


def test_unregister_worker_plugin_runs_teardown(small, poll):
    cl, c = small
    [addr] = c.nthreads()
    c.register_plugin(pc.RecordingWorkerPlugin("u"), name="rec-u")
    assert c.unregister_worker_plugin("rec-u") == {addr: {"status": "OK"}}
    assert c.run(pc.plugin_log)[addr] == [("u", "setup"), ("u", "teardown")]
    assert c.run(pc.plugin_names) == {addr: []}
    with pytest.raises(ValueError, match="The worker plugin rec-u does not exist"):
        c.unregister_worker_plugin("rec-u")
    # a worker joining now does not get it
    cl.scale(2)
    c.wait_for_workers(2)
    assert set(map(tuple, c.run(pc.plugin_names).values())) == {()}


def test_async_hooks_and_teardown_errors(small):
    _, c = small
    [addr] = c.nthreads()
    c.register_plugin(pc.AsyncSetupPlugin())
    assert c.run(pc.plugin_log)[addr] == [("async", "setup")]
    c.unregister_worker_plugin("async-setup")
    assert c.run(pc.plugin_log)[addr][-1] == ("async", "teardown")
    c.register_plugin(pc.FailingTeardownPlugin(), name="bad-teardown")
    with pytest.raises(KeyError, match="plugin teardown failed"):
        c.unregister_worker_plugin("bad-teardown")


def test_worker_plugin_setup_error_is_raised(small):
    cl, c = small
    with pytest.raises(ZeroDivisionError, match="plugin setup failed"):
        c.register_plugin(pc.FailingSetupPlugin(), name="bad-setup")
    cl.scale(2)  # the failure on a joining worker is logged; the worker still joins
    c.wait_for_workers(2)
    assert c.submit(inc, 1).result() == 2


def test_worker_plugin_failing_transition_is_logged(small, caplog):
    _, c = small
    c.register_plugin(pc.FailingTransitionPlugin(), name="bad-transition")
    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        assert c.gather(c.map(inc, range(10))) == list(range(1, 11))
    assert "worker plugin 'bad-transition' failed in transition" in caplog.text


def test_worker_plugin_replaced_or_kept(small):
    _, c = small
    [addr] = c.nthreads()
    c.register_plugin(pc.RecordingWorkerPlugin("one"), name="same")
    c.register_plugin(pc.RecordingWorkerPlugin("two"), name="same")  # replaces: old one torn down
    log = c.run(pc.plugin_log)[addr]
    assert log[:3] == [("one", "setup"), ("one", "teardown"), ("two", "setup")]
    assert c.register_plugin(pc.IdempotentPlugin()) == {addr: {"status": "OK"}}
    assert c.register_plugin(pc.IdempotentPlugin()) == {}
    assert c.run(pc.plugin_log)[addr].count(("idem", "setup")) == 1
    c.register_plugin(pc.RecordingWorkerPlugin("three"), name="same", idempotent=True)
    assert ("three", "setup") not in c.run(pc.plugin_log)[addr]


def test_deprecated_aliases(small):
    _, c = small
    with pytest.warns(DeprecationWarning, match="register_plugin"):
        c.register_worker_plugin(pc.RecordingWorkerPlugin("old"), name="old")
    with pytest.warns(DeprecationWarning, match="register_plugin"):
        c.register_scheduler_plugin(pc.RecordingSchedulerPlugin())
    assert "old" in next(iter(c.run(pc.plugin_names).values()))
    assert c.run_on_scheduler(pc.scheduler_plugin_names) == ["recording-scheduler-plugin"]


def test_scheduler_plugin_hooks(small, poll):
    cl, c = small
    name = "recording-scheduler-plugin"
    assert c.register_plugin(pc.RecordingSchedulerPlugin()) is None

    def events():
        return c.run_on_scheduler(pc.scheduler_plugin_events, name)

    assert events() == [("start",)]
    fut = c.submit(inc, 1, key="sched-inc")
    assert fut.result() == 2
    ev = events()
    moves = [e[2:] for e in ev if e[0] == "transition" and e[1] == "sched-inc"]
    assert moves[-1] == ("processing", "memory")
    assert ("released", "waiting") in moves
    [ug] = [e for e in ev if e[0] == "update_graph"]
    assert ug[1] == c.id and ug[2] == ["sched-inc"] and ug[3] == ["sched-inc"]
    c.log_event("my-topic", {"x": 1})
    poll(lambda: ("log_event", "my-topic", {"x": 1}) in events())

    with Client(cl) as c2:
        c2_id = c2.id
    poll(lambda: ("remove_client", c2_id) in events())
    assert ("add_client", c2_id) in events()

    cl.scale(2)
    c.wait_for_workers(2)
    added = [e[1] for e in events() if e[0] == "add_worker"]
    assert len(added) == 1
    cl.scale(1)
    poll(lambda: len(c.nthreads()) == 1)
    poll(lambda: [e[1] for e in events() if e[0] == "remove_worker"] != [])

    plugin = cl.scheduler.plugins[name] if cl.scheduler is not None else None
    c.unregister_scheduler_plugin(name)
    if plugin is not None:  # in-process scheduler: the removed plugin was closed
        assert plugin.events[-1] == ("close",)
        assert cl.scheduler.state.observers == []
    assert c.run_on_scheduler(pc.scheduler_plugin_names) == []
    with pytest.raises(ValueError, match="Could not find plugin"):
        c.unregister_scheduler_plugin(name)


def test_scheduler_plugin_async_hooks(small, poll):
    cl, c = small
    c.register_plugin(pc.AsyncHooksSchedulerPlugin())
    cl.scale(2)
    c.wait_for_workers(2)
    poll(lambda: [e[0] for e in c.run_on_scheduler(pc.scheduler_plugin_events, "async-hooks")] == ["add_worker"])


def test_broken_scheduler_plugin_breaks_nothing(small, caplog):
    cl, c = small
    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        c.register_plugin(pc.BrokenSchedulerPlugin())
        assert c.gather(c.map(inc, range(20))) == list(range(1, 21))
        with Client(cl) as c2:
            assert c2.submit(inc, 5).result() == 6
    assert "transition hook failed" in caplog.text
    assert "update_graph hook failed" in caplog.text
    assert c.submit(inc, 100).result() == 101


def test_scheduler_plugin_idempotent(small):
    _, c = small

    class Once(SchedulerPlugin):
        name = "once"
        idempotent = True

    c.register_plugin(Once())
    c.register_plugin(Once())
    assert c.run_on_scheduler(pc.scheduler_plugin_names) == ["once"]


def test_scheduler_started_with_plugins():
    import asyncio

    from shoal import Scheduler

    plugin = pc.RecordingSchedulerPlugin()

    async def main():
        async with Scheduler("inproc://", plugins=[plugin]) as s:
            assert s.plugins == {"recording-scheduler-plugin": plugin}
        return list(plugin.events)

    assert asyncio.run(main()) == [("start",), ("close",)]


def test_no_observers_without_transition_hooks(small):
    _, c = small
    c.register_plugin(pc.IdempotentPlugin())  # setup only: nothing watches transitions
    c.register_plugin(pc.AsyncHooksSchedulerPlugin())

    def observers(dask_worker):
        return len(dask_worker.state.observers)

    def scheduler_observers(dask_scheduler):
        return len(dask_scheduler.state.observers)

    assert set(c.run(observers).values()) == {0}
    assert c.run_on_scheduler(scheduler_observers) == 0
    c.register_plugin(pc.RecordingWorkerPlugin("obs"), name="obs")
    c.register_plugin(pc.RecordingSchedulerPlugin())
    assert set(c.run(observers).values()) == {1}
    assert c.run_on_scheduler(scheduler_observers) == 1
    c.unregister_worker_plugin("obs")
    c.unregister_scheduler_plugin("recording-scheduler-plugin")
    assert set(c.run(observers).values()) == {0}
    assert c.run_on_scheduler(scheduler_observers) == 0


def test_unique_names_by_default(small):
    _, c = small
    [addr] = c.nthreads()
    c.register_plugin(pc.RecordingWorkerPlugin("x"))
    c.register_plugin(pc.RecordingWorkerPlugin("y"))
    names = c.run(pc.plugin_names)[addr]
    assert len(names) == 2 and all(n.startswith("RecordingWorkerPlugin-") for n in names)
    uuid.UUID(names[0].split("-", 1)[1])  # the generated part is a uuid


@pytest.mark.parametrize("protocol", ["inproc://", "tcp://"])
def test_plugins_on_an_asynchronous_client(protocol, tmp_path):
    import asyncio

    name = f"shoal_async_upload_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("value = 7\n")

    async def main():
        async with (
            LocalCluster(n_workers=1, processes=False, asynchronous=True, protocol=protocol) as cluster,
            Client(cluster, asynchronous=True) as c,
        ):
            [addr] = await c.nthreads()
            assert await c.register_plugin(pc.RecordingWorkerPlugin("as"), name="as") == {addr: {"status": "OK"}}
            assert await c.register_plugin(pc.RecordingSchedulerPlugin()) is None
            assert await c.upload_file(str(tmp_path / f"{name}.py")) == {addr: {"status": "OK"}}
            assert await c.submit(pc.import_attr, name, "value") == 7
            await c.unregister_worker_plugin("as")
            await c.unregister_scheduler_plugin("recording-scheduler-plugin")
            assert (await c.run(pc.plugin_log))[addr][-1] == ("as", "teardown")

    asyncio.run(main())
