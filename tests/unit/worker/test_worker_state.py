"""The worker state machine, driven with events alone."""

from __future__ import annotations

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteFailure,
    ExecuteSuccess,
    FreeKeysEvent,
    Fetch,
    FetchDone,
    SendToScheduler,
    WorkerState,
)

SPEC = dumps(((), {}))


@pytest.fixture
def ws():
    s = WorkerState(address="tcp://me:1", nthreads=1, resources={"GPU": 1}, validate=True)
    yield s
    s.validate_state()


def compute(key, deps=None, run_id=1, priority=(0,), resources=None):
    deps = deps or {}
    return ComputeTaskEvent("s", m.ComputeTask(key, run_id, None, SPEC, priority, deps, {d: 8 for d in deps}, resources, False))


def sent(instructions, cls):
    return [i.msg for i in instructions if isinstance(i, SendToScheduler) and isinstance(i.msg, cls)]


def test_runs_one_task_per_thread_in_priority_order(ws):
    out = ws.handle_stimulus(compute("b", priority=(1,)), compute("a", priority=(0,)))
    assert [i.key for i in out if isinstance(i, Execute)] == ["a"]
    out = ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 42, 8, "int", 0, 1, None))
    assert [i.key for i in out if isinstance(i, Execute)] == ["b"]
    [fin] = sent(out, m.TaskFinished)
    assert fin.key == "a" and ws.data["a"] == 42


def test_fetches_dependencies_batched_per_peer(ws):
    out = ws.handle_stimulus(compute("z", {"x": ("tcp://p:1",), "y": ("tcp://p:1",)}))
    [g] = [i for i in out if isinstance(i, Fetch)]
    assert g.worker == "tcp://p:1" and set(g.keys) == {"x", "y"}
    out = ws.handle_stimulus(FetchDone("s", "tcp://p:1", g.keys, {"x": 1, "y": 2}, {"x": 8, "y": 8}))
    [ex] = [i for i in out if isinstance(i, Execute)]
    assert set(ex.deps) == {"x", "y"} and {d: ws.data[d] for d in ex.deps} == {"x": 1, "y": 2}
    assert sent(out, m.AddKeys)[0].nbytes == {"x": 8, "y": 8}


def test_missing_dependency_tries_other_holders_then_gives_up(ws):
    ws.handle_stimulus(compute("z", {"x": ("tcp://p:1", "tcp://q:1")}))
    out = ws.handle_stimulus(FetchDone("s", "tcp://p:1", ("x",), {}, {}, failed=True))
    [g] = [i for i in out if isinstance(i, Fetch)]
    assert g.worker == "tcp://q:1"
    out = ws.handle_stimulus(FetchDone("s", "tcp://q:1", ("x",), {}, {}))
    [missing] = sent(out, m.MissingData)
    assert missing.key == "z" and missing.dep == "x" and set(missing.holders) == {"tcp://p:1", "tcp://q:1"}
    assert "z" not in ws.tasks


def test_losing_the_only_holder_of_two_dependencies_hands_the_task_back_once(ws):
    # z needs x and y, both held only by p; p vanishes. Handing z back drops its other
    # fetch (y) too, which must not be handed back a second time (nor crash the worker).
    ws.handle_stimulus(compute("z", {"x": ("tcp://p:1",), "y": ("tcp://p:1",)}))
    out = ws.handle_stimulus(FetchDone("s", "tcp://p:1", ("x", "y"), {}, {}, failed=True))
    [missing] = sent(out, m.MissingData)
    assert missing.key == "z" and missing.dep in ("x", "y")
    assert "z" not in ws.tasks and not ws.fetch


def test_failure_is_reported_and_slot_freed(ws):
    ws.handle_stimulus(compute("a"), compute("b"))
    out = ws.handle_stimulus(ExecuteFailure("s", "a", 1, dumps(ValueError()), [], "ValueError", 0, 0))
    assert sent(out, m.TaskFailed)[0].key == "a"
    assert [i.key for i in out if isinstance(i, Execute)] == ["b"]


def test_freed_while_executing_drops_the_result(ws):
    ws.handle_stimulus(compute("a"))
    ws.handle_stimulus(FreeKeysEvent("s", ("a",)))
    out = ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 42, 8, "int", 0, 1, None))
    assert not sent(out, m.TaskFinished) and "a" not in ws.data


def test_resources_limit_concurrency():
    ws = WorkerState(address="tcp://me:1", nthreads=2, resources={"GPU": 1}, validate=True)
    out = ws.handle_stimulus(compute("a", resources={"GPU": 1}), compute("b", resources={"GPU": 1}))
    assert [i.key for i in out if isinstance(i, Execute)] == ["a"]
    out = ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 1, 8, "int", 0, 1, None))
    assert [i.key for i in out if isinstance(i, Execute)] == ["b"]


def test_free_keys_deletes_data(ws):
    ws.handle_stimulus(compute("a"))
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 1, 8, "int", 0, 1, None))
    ws.handle_stimulus(FreeKeysEvent("s", ("a",)))
    assert ws.data == {}


def test_tiny_tasks_are_queued_ahead_in_the_pool_slow_ones_are_not(ws):
    ws.handle_stimulus(*[compute(f"t{i}", priority=(i,)) for i in range(40)])
    assert len(ws.executing) == 1  # no duration known yet: one per thread
    out = ws.handle_stimulus(ExecuteSuccess("s", "t0", 1, 0, 8, "int", 0.0, 0.00001, None))
    # 10 us per task: up to 16 more per thread wait in the pool
    assert len([i for i in out if isinstance(i, Execute)]) == 17
    slow = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    slow.handle_stimulus(*[compute(f"s{i}", priority=(i,)) for i in range(5)])
    out = slow.handle_stimulus(ExecuteSuccess("s", "s0", 1, 0, 8, "int", 0.0, 1.0, None))
    assert len([i for i in out if isinstance(i, Execute)]) == 1


def test_only_tasks_holding_a_thread_are_reported_started():
    ws = WorkerState(address="tcp://me:1", nthreads=2, validate=True)
    ws.avg_duration = 1e-5  # tiny tasks: many are queued ahead in the pool's queue
    out = ws.handle_stimulus(*[compute(f"t{i}", priority=(i,)) for i in range(10)])
    assert len([i for i in out if isinstance(i, Execute)]) == 10
    [msg] = sent(out, m.TaskStarted)
    assert msg.keys == ("t0", "t1") and msg.run_ids == (1, 1)  # the rest only wait in the queue
    # t0 done: its thread takes the next one in hand-over order
    out = ws.handle_stimulus(ExecuteSuccess("s", "t0", 1, 0, 8, "int", 0.0, 0.00001, None))
    [msg] = sent(out, m.TaskStarted)
    assert msg.keys == ("t2",)
    # nothing new holds a thread: nothing to report
    out = ws.handle_stimulus(compute("late", priority=(99,)))
    assert sent(out, m.TaskStarted) == []


def test_resource_tasks_are_never_queued_ahead():
    ws = WorkerState(address="tcp://me:1", nthreads=1, resources={"GPU": 5}, validate=True)
    ws.avg_duration = 1e-5
    out = ws.handle_stimulus(*[compute(f"g{i}", priority=(i,), resources={"GPU": 1}) for i in range(3)])
    assert len([i for i in out if isinstance(i, Execute)]) == 1


def test_steal_request_releases_only_tasks_not_started(ws):
    from shoal.worker.state import StealRequestEvent

    ws.handle_stimulus(compute("a"), compute("b"))  # a executes, b is ready
    out = ws.handle_stimulus(StealRequestEvent("s", "b", 1), StealRequestEvent("s", "a", 1))
    responses = {msg.key: msg.released for msg in sent(out, m.StealResponse)}
    assert responses == {"b": True, "a": False}
    assert "b" not in ws.tasks and ws.tasks["a"].state == "executing"


def test_secede_frees_the_thread_slot_and_tells_the_scheduler(ws):
    from shoal.worker.state import SecedeEvent

    ws.handle_stimulus(compute("parent"), compute("child"))
    out = ws.handle_stimulus(SecedeEvent("s", "parent", 1))
    assert [i.key for i in out if isinstance(i, Execute)] == ["child"]
    assert sent(out, m.LongRunning)[0].key == "parent"
    assert ws.tasks["parent"].state == "long-running"
    out = ws.handle_stimulus(ExecuteSuccess("s", "parent", 1, 7, 8, "int", 0, 1, None))
    assert sent(out, m.TaskFinished)[0].key == "parent" and ws.data["parent"] == 7
