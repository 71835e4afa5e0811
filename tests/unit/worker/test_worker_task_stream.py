"""The worker's task-stream ring buffer, driven through the pure state machine."""

from __future__ import annotations

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.worker.state import (
    TASK_STREAM_FIELDS,
    ComputeTaskEvent,
    ExecuteFailure,
    ExecuteSuccess,
    FreeKeysEvent,
    FetchDone,
    WorkerState,
)

SPEC = dumps(((), {}))


def compute(key, deps=None, run_id=1):
    deps = deps or {}
    return ComputeTaskEvent("s", m.ComputeTask(key, run_id, None, SPEC, (0,), deps, {d: 8 for d in deps}, None, False))


def record(ws, i=-1):
    return dict(zip(TASK_STREAM_FIELDS, ws.task_stream[i]))


def test_success_and_failure_are_recorded_with_thread_and_times():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("a"), compute("b"))
    ws.handle_stimulus(ExecuteSuccess("done-a", "a", 1, 42, 28, "int", 10.0, 11.0, None, thread=77))
    ws.handle_stimulus(ExecuteFailure("s", "b", 1, dumps(ValueError()), [("f.py", 3, "g")], "ValueError: x", 12.0, 13.0, 77))
    ok, err = record(ws, 0), record(ws, 1)
    assert ok == {
        "key": "a", "thread": 77, "start": 10.0, "stop": 11.0, "status": "OK", "nbytes": 28, "type": "int",
        "transfers": None, "error": None, "stimulus_id": "done-a", "metadata": None,
    }  # fmt: skip
    assert err["status"] == "error" and err["error"] == ("ValueError: x", [("f.py", 3, "g")])
    assert ws.task_stream_count == 2


def test_metadata_set_while_running_is_recorded():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("a"), compute("b"))
    ws.tasks["a"].metadata["rows"] = 10  # what a task or a worker plugin does while it runs
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 42, 28, "int", 10.0, 11.0, None, thread=1))
    ws.handle_stimulus(ExecuteSuccess("s", "b", 1, 43, 28, "int", 11.0, 12.0, None, thread=1))
    assert record(ws, 0)["metadata"] == {"rows": 10}
    assert record(ws, 1)["metadata"] is None  # no dict made for a task without metadata


def test_transfers_of_fetched_dependencies_are_attached_to_the_dependent():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("z", {"x": ("tcp://p:1",), "y": ("tcp://p:1",)}))
    ws.handle_stimulus(FetchDone("s", "tcp://p:1", ("x", "y"), {"x": 1, "y": 2}, {"x": 8, "y": 8}, start=5.0, stop=6.0))
    ws.handle_stimulus(ExecuteSuccess("s", "z", 1, 3, 28, "int", 7.0, 8.0, None, thread=1))
    # one fetch brought both dependencies: one transfer entry
    assert record(ws)["transfers"] == [(5.0, 6.0, "tcp://p:1", 16)]


def test_dropped_results_are_not_recorded():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("a"))
    ws.handle_stimulus(FreeKeysEvent("s", ("a",)))
    ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 42, 8, "int", 0, 1, None))
    assert not ws.task_stream and ws.task_stream_count == 0


def test_buffer_is_bounded_but_counts_every_record():
    ws = WorkerState(address="tcp://me:1", nthreads=1, task_stream_length=3)
    for i in range(10):
        ws.handle_stimulus(compute(f"t-{i}"))
        ws.handle_stimulus(ExecuteSuccess("s", f"t-{i}", 1, i, 28, "int", i, i + 0.5, None))
    assert [r[0] for r in ws.task_stream] == ["t-7", "t-8", "t-9"]
    assert ws.task_stream_count == 10
