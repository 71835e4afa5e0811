"""Plugins and helpers for the plugin tests (importable by worker processes).

Worker and nanny plugins record what happened to them on the object they run in
(`worker.test_plugin_log` / `nanny.test_plugin_log`), so tests read it with `Client.run`
or from the nanny object; scheduler plugins record on themselves.
"""

from __future__ import annotations

import asyncio
import importlib
import os

from shoal import get_worker
from shoal.diagnostics.plugin import NannyPlugin, SchedulerPlugin, WorkerPlugin


def _log(obj, entry) -> None:
    if not hasattr(obj, "test_plugin_log"):
        obj.test_plugin_log = []
    obj.test_plugin_log.append(entry)


class RecordingWorkerPlugin(WorkerPlugin):
    """Records setup, teardown and transitions on the worker."""

    def __init__(self, tag: str = "rec"):
        self.tag = tag

    def setup(self, worker):
        _log(worker, (self.tag, "setup"))
        self.worker = worker

    def teardown(self, worker):
        _log(worker, (self.tag, "teardown"))

    def transition(self, key, start, finish, **kwargs):
        assert "stimulus_id" in kwargs
        _log(self.worker, (self.tag, "transition", key, start, finish))


class AsyncSetupPlugin(WorkerPlugin):
    name = "async-setup"

    async def setup(self, worker):
        await asyncio.sleep(0)
        _log(worker, ("async", "setup"))

    async def teardown(self, worker):
        await asyncio.sleep(0)
        _log(worker, ("async", "teardown"))


class FailingSetupPlugin(WorkerPlugin):
    def setup(self, worker):
        raise ZeroDivisionError("plugin setup failed")


class FailingTeardownPlugin(WorkerPlugin):
    def teardown(self, worker):
        raise KeyError("plugin teardown failed")


class FailingTransitionPlugin(WorkerPlugin):
    def transition(self, key, start, finish, **kwargs):
        raise RuntimeError("worker transition hook failed")


class IdempotentPlugin(WorkerPlugin):
    name = "idempotent-plugin"
    idempotent = True

    def setup(self, worker):
        _log(worker, ("idem", "setup"))


def plugin_log(dask_worker):
    return list(getattr(dask_worker, "test_plugin_log", []))


def plugin_names(dask_worker):
    return sorted(dask_worker.plugins)


def plugin_log_in_task(_):
    """What the worker running this task recorded (runs as a task)."""
    w = get_worker()
    return list(getattr(w, "test_plugin_log", []))


class RecordingSchedulerPlugin(SchedulerPlugin):
    """Records every hook the scheduler calls (plain data, read with run_on_scheduler)."""

    name = "recording-scheduler-plugin"

    def __init__(self):
        self.events = []

    async def start(self, scheduler):
        self.events.append(("start",))

    async def close(self):
        self.events.append(("close",))

    def update_graph(self, scheduler, *, client, keys, tasks, annotations, priority, stimulus_id, **kwargs):
        self.events.append(("update_graph", client, sorted(map(str, keys)), sorted(map(str, tasks)), annotations))

    def transition(self, key, start, finish, *args, stimulus_id, **kwargs):
        self.events.append(("transition", key, start, finish))

    def add_worker(self, scheduler, worker):
        self.events.append(("add_worker", worker))

    def remove_worker(self, scheduler, worker, *, stimulus_id, **kwargs):
        self.events.append(("remove_worker", worker))

    def add_client(self, scheduler, client):
        self.events.append(("add_client", client))

    def remove_client(self, scheduler, client):
        self.events.append(("remove_client", client))

    def log_event(self, topic, msg):
        self.events.append(("log_event", topic, msg))


class AsyncHooksSchedulerPlugin(SchedulerPlugin):
    name = "async-hooks"

    def __init__(self):
        self.events = []

    async def add_worker(self, scheduler, worker):
        await asyncio.sleep(0)
        self.events.append(("add_worker", worker))

    async def remove_worker(self, scheduler, worker, *, stimulus_id, **kwargs):
        await asyncio.sleep(0)
        self.events.append(("remove_worker", worker))


class BrokenSchedulerPlugin(SchedulerPlugin):
    """Every hook raises; the scheduler must carry on."""

    name = "broken"

    def transition(self, key, start, finish, *args, stimulus_id, **kwargs):
        raise RuntimeError("scheduler transition hook failed")

    def update_graph(self, scheduler, **kwargs):
        raise RuntimeError("update_graph hook failed")

    def add_client(self, scheduler, client):
        raise RuntimeError("add_client hook failed")

    async def remove_client(self, scheduler, client):
        raise RuntimeError("async remove_client hook failed")


def scheduler_plugin_events(name, dask_scheduler=None):
    plugin = dask_scheduler.plugins.get(name)
    return None if plugin is None else list(plugin.events)


def scheduler_plugin_names(dask_scheduler=None):
    return sorted(dask_scheduler.plugins)


class EnvironNannyPlugin(NannyPlugin):
    """Sets an environment variable in the nanny (so its worker processes inherit it)."""

    restart = True

    def __init__(self, var: str, value: str):
        self.var = var
        self.value = value
        self.name = f"environ-{var}"

    def setup(self, nanny):
        os.environ[self.var] = self.value
        _log(nanny, ("environ", "setup"))

    def teardown(self, nanny):
        os.environ.pop(self.var, None)
        _log(nanny, ("environ", "teardown"))


def getenv(var):
    return os.environ.get(var)


def import_attr(module: str, attr: str):
    """Import `module` in the task and return `module.attr`."""
    return getattr(importlib.import_module(module), attr)


def pid_and_file(filename, dask_worker=None):
    path = os.path.join(dask_worker.local_directory, filename)
    return os.getpid(), os.path.exists(path)
