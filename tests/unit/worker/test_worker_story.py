"""The worker state machine's story log and replicas reported to the scheduler."""

from __future__ import annotations

import itertools

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.testing.matchers import TransitionRecorder
from shoal.worker.state import (
    ComputeTaskEvent,
    ExecuteFailure,
    ExecuteSuccess,
    FreeKeysEvent,
    FetchDone,
    SendToScheduler,
    UpdateDataEvent,
    WorkerState,
)

SPEC = dumps(((), {}))


def make(clock=None):
    ticks = itertools.count(1)
    return WorkerState(address="tcp://me:1", nthreads=1, validate=True, clock=clock or (lambda: float(next(ticks))))


def compute(key, sid, deps=None):
    deps = deps or {}
    return ComputeTaskEvent(sid, m.ComputeTask(key, 1, None, SPEC, (0,), deps, dict.fromkeys(deps, 8), None, False))


def test_story_of_a_task_run_and_freed():
    ws = make()
    ws.handle_stimulus(compute("x", "s1"))
    ws.handle_stimulus(ExecuteSuccess("s2", "x", 1, 2, 28, "int", 0.0, 0.1, None))
    ws.handle_stimulus(FreeKeysEvent("s3", ("x",)))
    # the clock is read once per stimulus batch
    assert ws.story("x") == [
        ("x", "released", "ready", "s1", 1.0),
        ("x", "ready", "executing", "s1", 1.0),
        ("x", "executing", "memory", "s2", 2.0),
        ("x", "memory", "released", "s3", 3.0),
    ]
    assert ws.story("s2") == [("x", "executing", "memory", "s2", 2.0)]
    assert ws.story("nope") == []


def test_story_of_a_failed_fetch_and_error():
    ws = make(clock=lambda: 0.0)
    ws.handle_stimulus(compute("y", "c1", deps={"x": ["tcp://peer:1"]}))
    ws.handle_stimulus(FetchDone("g1", "tcp://peer:1", ("x",), {}, {}))
    entries = [e[:3] + e[5:] for e in ws.story("x", "y")]
    assert entries == [
        ("x", "released", "fetch"),
        ("y", "released", "waiting"),
        ("x", "fetch", "flight"),
        ("x", "flight", "fetch", "tcp://peer:1"),  # the cause: the peer that lacked it
        ("x", "fetch", "released", "no holder left"),
        ("y", "waiting", "released", "missing-data 'x'"),
    ]
    ws.handle_stimulus(compute("z", "c2"))
    ws.handle_stimulus(ExecuteFailure("e1", "z", 1, dumps(ValueError()), None, "ValueError", 0.0, 0.0))
    assert ws.story("z")[-1][1:3] == ("executing", "error")


def test_story_log_is_bounded():
    ws = WorkerState(address="tcp://me:1", nthreads=1, story_length=3)
    for i in range(5):
        ws.handle_stimulus(UpdateDataEvent(f"u{i}", {f"k{i}": i}, {f"k{i}": 8}))
    assert [e[0] for e in ws.story_log] == ["k2", "k3", "k4"]


def test_fetched_replicas_are_reported_scattered_data_is_not():
    ws = make()
    out = ws.handle_stimulus(UpdateDataEvent("u1", {"a": 1}, {"a": 8}))
    assert out == []  # scatter: the client tells the scheduler itself
    out = ws.handle_stimulus(UpdateDataEvent("u2", {"b": 2}, {"b": 16}, report=True))
    assert out == [SendToScheduler(m.AddKeys({"b": 16}))]
    assert ws.data == {"a": 1, "b": 2}


def test_observers_see_every_story_entry_with_its_stimulus():
    ws = make()
    rec = TransitionRecorder()
    ws.observers.append(rec)
    ws.handle_stimulus(compute("x", "s1"))
    ws.handle_stimulus(ExecuteSuccess("s2", "x", 1, 2, 28, "int", 0.0, 0.1, None))
    ws.observers.clear()
    ws.handle_stimulus(FreeKeysEvent("s3", ("x",)))  # no observer any more
    seen = rec.seen
    assert seen == [
        ("x", "released", "ready", "s1"),
        ("x", "ready", "executing", "s1"),
        ("x", "executing", "memory", "s2"),
    ]
    assert [e[:4] for e in ws.story("x")] == [*seen, ("x", "memory", "released", "s3")]
