"""Actor tasks in the worker state machine: the object and its proxy are kept apart."""

from __future__ import annotations

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteSuccess,
    FreeKeysEvent,
    SendToScheduler,
    WorkerState,
)

SPEC = dumps(((), {}))


@pytest.fixture
def ws():
    s = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    yield s
    s.validate_state()


def compute(key, deps=None, actor=False):
    deps = deps or {}
    msg = m.ComputeTask(key, 1, None, SPEC, (0,), deps, {d: 8 for d in deps}, None, True, actor)
    return ComputeTaskEvent("s", msg)


def test_actor_task_is_executed_as_an_actor(ws):
    out = ws.handle_stimulus(compute("a", actor=True), compute("t"))
    [ex] = [i for i in out if isinstance(i, Execute)]
    assert ex.key == "a" and ex.actor


def test_actor_object_kept_apart_from_its_proxy(ws):
    instance, proxy = object(), "proxy-of-a"
    ws.handle_stimulus(compute("a", actor=True))
    out = ws.handle_stimulus(ExecuteSuccess("s", "a", 1, proxy, 8, "Counter", 0, 1, None, instance=instance))
    assert ws.actors == {"a": instance}
    assert ws.data["a"] == proxy
    [fin] = [i.msg for i in out if isinstance(i, SendToScheduler) and isinstance(i.msg, m.TaskFinished)]
    assert fin.key == "a"


def test_dependents_get_the_proxy(ws):
    instance = object()
    ws.handle_stimulus(compute("a", actor=True))
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, "proxy-of-a", 8, "Counter", 0, 1, None, instance=instance))
    out = ws.handle_stimulus(compute("use", {"a": ("tcp://me:1",)}))
    [ex] = [i for i in out if isinstance(i, Execute)]
    assert ex.deps == ("a",) and ws.data["a"] == "proxy-of-a" and not ex.actor


def test_plain_task_result_is_not_an_actor(ws):
    ws.handle_stimulus(compute("t"))
    ws.handle_stimulus(ExecuteSuccess("s", "t", 1, 42, 8, "int", 0, 1, None))
    assert ws.actors == {} and ws.data["t"] == 42


def test_freeing_the_key_drops_the_actor(ws):
    ws.handle_stimulus(compute("a", actor=True))
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, "proxy", 8, "Counter", 0, 1, None, instance=object()))
    ws.handle_stimulus(FreeKeysEvent("s", ("a",)))
    assert "a" not in ws.actors and "a" not in ws.data


def test_actor_freed_while_creating_is_not_kept(ws):
    ws.handle_stimulus(compute("a", actor=True))
    ws.handle_stimulus(FreeKeysEvent("s", ("a",)))
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, "proxy", 8, "Counter", 0, 1, None, instance=object()))
    assert ws.actors == {} and ws.data == {}
