"""The worker's transition table: the docs' table matches the code, a move along no edge
fails with a story, every story entry is an edge between states, the validator fires, and
the errors pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.worker.state import (
    TRANSITIONS,
    ComputeTaskEvent,
    ExecuteSuccess,
    FreeKeysEvent,
    FetchDone,
    InvalidState,
    InvalidTransition,
    StealRequestEvent,
    UpdateDataEvent,
    WorkerState,
)

DESIGN = Path(__file__).resolve().parents[3] / "docs" / "design.md"
SPEC = dumps(((), {}))
PEER = "tcp://peer:1"


def doc_edges(text: str) -> set[tuple[str, str]]:
    section = text.split("## The worker state machine", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = set()
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        out |= {(cells[0], finish) for finish, cell in zip(header[1:], cells[1:]) if "✔" in cell}
    return out


def test_the_docs_table_is_the_codes_table():
    assert doc_edges(DESIGN.read_text()) == set(TRANSITIONS)


def test_a_wrong_edge_in_the_docs_fails():
    text = DESIGN.read_text().replace("| memory       |   |", "| memory       | ✔ |", 1)
    assert doc_edges(text) - set(TRANSITIONS) == {("memory", "waiting")}


def compute(key, sid, deps=None, run_id=1):
    deps = deps or {}
    return ComputeTaskEvent(sid, m.ComputeTask(key, run_id, None, SPEC, (0,), deps, dict.fromkeys(deps, 8), None, False))


def states_in(story):
    known = {s for edge in TRANSITIONS for s in edge}
    return [(e[1], e[2]) for e in story if e[1] not in known or e[2] not in known or (e[1], e[2]) not in TRANSITIONS]


def test_every_story_entry_is_an_edge():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("y", "c1", deps={"x": [PEER]}), compute("z", "c2"))
    ws.handle_stimulus(FetchDone("g1", PEER, ("x",), {"x": 1}, {"x": 8}))
    ws.handle_stimulus(compute("w", "c3", run_id=5), StealRequestEvent("s1", "w", 5))
    ws.handle_stimulus(compute("z", "c4", run_id=2))  # supersedes the running z
    ws.handle_stimulus(UpdateDataEvent("u1", {"k": 1}, {"k": 8}), FreeKeysEvent("f1", ("k", "x", "y", "z")))
    assert len(ws.story_log) > 10
    assert states_in(ws.story_log) == []
    causes = {e[5] for e in ws.story_log if len(e) > 5}
    assert {"stolen", "superseded"} <= causes


def test_a_move_along_no_edge_raises_with_the_story():
    ws = WorkerState(address="tcp://me:1", nthreads=1)
    ws.handle_stimulus(compute("x", "c1"))
    with pytest.raises(InvalidTransition, match="memory -> executing") as info:
        ws._log("x", "memory", "executing")  # what a broken handler would do
    assert info.value.story and info.value.story[0][0] == "x"
    back = pickle.loads(pickle.dumps(info.value))
    assert (back.key, back.start, back.finish) == ("x", "memory", "executing")


@pytest.mark.parametrize(
    "corrupt, what",
    [
        (lambda ws: ws.tasks["y"].waiting_for.clear(), "waiting on nothing"),
        (lambda ws: ws.fetch.clear(), "not fetched"),
        (lambda ws: setattr(ws.tasks["z"], "state", "bogus"), "not a live task state"),
        (lambda ws: ws.executing.clear(), "not handed to the pool"),
        (lambda ws: ws.actors.__setitem__("nope", object()), "actor without its proxy"),
    ],
)
def test_the_validator_fires(corrupt, what):
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("y", "c1", deps={"x": [PEER]}), compute("z", "c2"))
    ws.validate_state()
    corrupt(ws)
    with pytest.raises(InvalidState, match=what):
        ws.validate_state()


def test_a_finished_task_leaves_the_table_in_memory():
    ws = WorkerState(address="tcp://me:1", nthreads=1, validate=True)
    ws.handle_stimulus(compute("z", "c1"))
    ws.handle_stimulus(ExecuteSuccess("e1", "z", 1, 2, 28, "int", 0.0, 0.1, None))
    assert "z" not in ws.tasks and ws.data["z"] == 2
    assert [e[1:3] for e in ws.story("z")] == [("released", "ready"), ("ready", "executing"), ("executing", "memory")]


def test_an_observer_cannot_reenter_the_worker_state_machine():
    from shoal.exceptions import ReentrantStimulus

    ws = WorkerState(address="tcp://me:1", nthreads=1)
    ws.observers.append(lambda *entry: ws.handle_stimulus(FreeKeysEvent("nested", ())))
    with pytest.raises(ReentrantStimulus):
        ws.handle_stimulus(compute("x", "c1"))
    ws.observers.clear()  # the failed stimulus is half applied (rollback is not ours here)
    ws.handle_stimulus(compute("y", "c2"))  # the guard is down again
    assert ws.tasks["y"].state == "executing"
