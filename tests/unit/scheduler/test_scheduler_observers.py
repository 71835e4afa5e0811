"""Progress and task-metadata observers, driven through the pure scheduler state machine."""

from __future__ import annotations

import itertools

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddWorker, ClientMsg, WorkerMsg
from shoal.scheduler.observers import MetadataWatch, ProgressWatch
from shoal.scheduler.state import SchedulerState
from shoal.testing.matchers import TransitionRecorder

SPEC = dumps(((), {}))
W = "tcp://w1:1"
_sid = itertools.count()


def sid() -> str:
    return f"s{next(_sid)}"


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    s.handle_stimulus(AddWorker(sid(), m.RegisterWorker(W, W, 4, 0, {}, 1, "/tmp", {}, None)))
    yield s
    s.validate_state()


def graph(s, tasks, wanted, client="c"):
    wire = tuple((k, -1, SPEC, tuple(deps), (0, i), None) for i, (k, deps) in enumerate(tasks.items()))
    return s.handle_stimulus(ClientMsg(sid(), client, m.UpdateGraph(wire, (), tuple(wanted))))


def finish(s, key):
    ts = s.tasks[key]
    return s.handle_stimulus(WorkerMsg(sid(), W, m.TaskFinished(key, ts.run_id, 8, "int", 0.0, 0.001, None)))


def fail(s, key):
    ts = s.tasks[key]
    msg = m.TaskFailed(key, ts.run_id, dumps(ValueError("x")), None, "ValueError: x", 0.0, 0.001)
    return s.handle_stimulus(WorkerMsg(sid(), W, msg))


def test_progress_counts_the_graph_per_prefix_and_finishes(state):
    graph(state, {"a-1": [], "a-2": [], "b-1": ["a-1", "a-2"]}, ["b-1"])
    watch = ProgressWatch(state.tasks, ["b-1"])
    finished = []
    watch.on_finish = lambda: finished.append(True)
    state.observers.append(watch)
    assert watch.counts() == {"a": (2, 0, 0, 0), "b": (1, 0, 0, 0)}
    finish(state, "a-1")
    finish(state, "a-2")
    assert watch.counts()["a"] == (2, 2, 0, 0) and not finished
    finish(state, "b-1")
    assert watch.counts()["b"] == (1, 1, 0, 0) and finished == [True] and watch.finished


def test_progress_stops_descending_at_tasks_in_memory(state):
    graph(state, {"a-1": [], "b-1": ["a-1"]}, ["b-1"])
    finish(state, "a-1")
    assert ProgressWatch(state.tasks, ["b-1"]).counts() == {"a": (1, 1, 0, 0), "b": (1, 0, 0, 0)}
    assert ProgressWatch(state.tasks, ["b-1"], complete=False).counts() == {"b": (1, 0, 0, 0)}


def test_progress_counts_errors_and_cancellations_and_unknown_keys(state):
    graph(state, {"a-1": [], "b-1": ["a-1"], "c-1": []}, ["b-1", "c-1"])
    watch = ProgressWatch(state.tasks, ["b-1", "c-1", "gone-1"])
    state.observers.append(watch)
    assert watch.counts()["gone"] == (1, 0, 0, 1)
    fail(state, "a-1")  # b-1 inherits the error
    assert watch.counts()["a"] == (1, 0, 1, 0) and watch.counts()["b"] == (1, 0, 1, 0)
    state.handle_stimulus(ClientMsg(sid(), "c", m.CancelKeys(("c-1",), False, None, None)))
    assert watch.counts()["c"] == (1, 0, 0, 1) and watch.finished


def test_metadata_watch_records_final_state_of_keys_asked_for_while_active(state):
    graph(state, {"early-1": []}, ["early-1"])
    watch = MetadataWatch()
    state.observers.append(watch)
    graph(state, {"x-1": [], "y-1": ["x-1"], "e-1": []}, ["y-1", "e-1"])
    finish(state, "early-1")
    finish(state, "x-1")
    finish(state, "y-1")
    fail(state, "e-1")
    assert watch.state == {"y-1": "memory", "e-1": "erred"}
    assert watch.metadata["y-1"]["workers"] == [W] and watch.metadata["y-1"]["nbytes"] == 8
    assert watch.metadata["e-1"]["exception_text"] == "ValueError: x"


def test_observers_get_the_stimulus_id_of_each_transition(state):
    rec = TransitionRecorder()
    state.observers.append(rec)
    graph(state, {"x": []}, ["x"])
    finish(state, "x")
    assert [e[1:3] for e in rec.seen] == [("released", "waiting"), ("waiting", "queued"), ("queued", "processing"),
                                         ("processing", "memory")]  # fmt: skip
    assert [e[3] for e in rec.seen] == [e[3] for e in state.story("x")]
