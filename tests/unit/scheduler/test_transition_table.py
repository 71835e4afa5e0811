"""The scheduler's transition table: the docs' table matches the code, no state is written
outside a transition function, every edge is logged (scatter included) under the
stimulus that caused it, the validator fires, and the errors pickle."""

from __future__ import annotations

import ast
import itertools
import pickle
from pathlib import Path

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, WorkerMsg
from shoal.scheduler.state import InvalidState, InvalidTransition, ReentrantStimulus, SchedulerState
from shoal.testing.matchers import TransitionRecorder

ROOT = Path(__file__).resolve().parents[3]
#: the state machine's modules: the class in state.py and its records and mixins
SOURCES = [ROOT / "shoal" / "scheduler" / f"{name}.py" for name in ("state", "records", "client_events", "worker_events", "transitions")]
DESIGN = ROOT / "docs" / "design.md"
SPEC = dumps(((), {}))
W = "tcp://w1:1"
_sid = itertools.count()


def sid() -> str:
    return f"t{next(_sid)}"


def code_edges() -> set[tuple[str, str]]:
    return set(SchedulerState._TRANSITIONS) | set(SchedulerState._DIRECT_TRANSITIONS)


def doc_edges(text: str) -> set[tuple[str, str]]:
    """The ✔ cells of the scheduler's "from \\ to" table in `text`."""
    section = text.split("## The scheduler state machine", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[0].startswith("from")
    out = set()
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for finish, cell in zip(header[1:], cells[1:]):
            if "✔" in cell:
                out.add((cells[0], finish))
    return out


def test_the_docs_table_is_the_codes_table():
    assert doc_edges(DESIGN.read_text()) == code_edges()


def test_a_wrong_edge_in_the_docs_fails():
    text = DESIGN.read_text().replace("| memory      |         |", "| memory      | ✔       |", 1)
    assert doc_edges(text) - code_edges() == {("memory", "waiting")}


def test_every_table_function_is_named_for_its_edge():
    for (start, finish), func in {**SchedulerState._TRANSITIONS, **SchedulerState._DIRECT_TRANSITIONS}.items():
        assert func.__name__ == f"_t_{start}_{finish}".replace("-", "_")


def _state_writes() -> list[tuple[str, str, int]]:
    """(enclosing function, state written, line) of every `<x>.state = "..."`."""
    out = []
    for func in (f for source in SOURCES for f in ast.walk(ast.parse(source.read_text()))):
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr == "state":
                        value = node.value.value if isinstance(node.value, ast.Constant) else None
                        out.append((func.name, value, node.lineno))
    return out


def test_no_state_is_written_outside_a_transition_function():
    writes = _state_writes()
    assert len(writes) > 10  # the walk sees them
    for name, value, line in writes:
        if name == "__init__":
            assert value == "released", f"a new task starts released (line {line})"
            continue
        assert value is not None, f"{name} writes a computed state (line {line})"
        assert name.startswith("_t_") and name.endswith("_" + value.replace("-", "_")), (
            f"line {line}: {name} writes state {value!r}; only a transition function _t_<start>_{value} may"
        )


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    s.handle_stimulus(AddWorker(sid(), m.RegisterWorker(W, W, 1, 0, {}, 1, "/tmp", {}, None)), AddClient(sid(), "c"))
    return s


def test_scattered_keys_are_logged_and_observed(state):
    obs = TransitionRecorder()
    state.observers.append(obs)
    ev = ClientMsg(sid(), "c", m.UpdateData({"x": (W,)}, {"x": 8}, {"x": "int"}))
    state.handle_stimulus(ev)
    assert ("x", "released", "memory", ev.stimulus_id) in [e[:4] for e in state.story_log]
    assert obs.seen == [("x", "released", "memory", ev.stimulus_id)]


def test_client_stimulus_ids_reach_the_story(state):
    wire = (("x", -1, SPEC, (), (0, 0), None),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    ts = state.tasks["x"]
    err = m.TaskFailed("x", ts.run_id, dumps(ValueError()), None, "ValueError()", 0.0, 0.1)
    state.handle_stimulus(WorkerMsg(sid(), W, err))
    retry = ClientMsg(sid(), "c", m.RetryKeys(("x",)))
    state.handle_stimulus(retry)
    mine = [e for e in state.story_log if e[3] == retry.stimulus_id]
    assert ("x", "erred", "released") in [e[:3] for e in mine]
    assert not [e for e in state.story_log if e[3] in ("retry", "update-data")]


def test_an_observer_cannot_reenter_the_state_machine(state):
    class Meddler(TransitionRecorder):
        def transition(self, ts, start, stimulus_id):
            state.handle_stimulus(AddClient(sid(), "d"))

    state.observers.append(Meddler())
    wire = (("x", -1, SPEC, (), (0, 0), None),)
    with pytest.raises(ReentrantStimulus):
        state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    state.observers.clear()
    state.validate = False  # the failed stimulus is half applied (rollback is not ours here)
    state.handle_stimulus(AddClient(sid(), "e"))  # the guard is down again
    assert "e" in state.clients


def test_invalid_transition_pickles():
    err = InvalidTransition(("x", 1), "memory", "queued", [("x", "a", "b", "s", 0.0)])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InvalidTransition and (back.key, back.start, back.finish) == (("x", 1), "memory", "queued")
    assert str(back) == str(err)


def _computed(state, *keys, deps=None):
    deps = deps or {}
    wire = tuple((k, -1, SPEC, tuple(deps.get(k, ())), (0, i), None) for i, k in enumerate(keys))
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), keys[-1:])))


@pytest.mark.parametrize(
    "corrupt, what",
    [
        (lambda s: setattr(s.tasks["y"], "n_waiting", 0), "n_waiting"),
        (lambda s: setattr(s.tasks["x"], "n_waiters", 5), "n_waiters"),
        (lambda s: setattr(s.tasks["y"], "dependencies", ()), "asymmetric"),
        (lambda s: setattr(s, "n_queued", 3), "n_queued"),
        (lambda s: s.clients["c"].wants.clear(), "who_wants/wants"),
        (lambda s: setattr(s.tasks["x"], "state", "bogus"), "unknown state"),
    ],
)
def test_the_validator_fires(state, corrupt, what):
    _computed(state, "x", "y", deps={"y": ["x"]})  # x processing, y waiting on it
    state.validate_state()
    corrupt(state)
    with pytest.raises(InvalidState, match=what):
        state.validate_state()


def test_the_validator_sees_a_task_waiting_on_nothing(state):
    _computed(state, "x", "y", deps={"y": ["x"]})
    x = state.tasks["x"]
    x.state = "memory"  # as if finished without the dependents being told
    x.who_has = {state.workers[W]}
    state.workers[W].has_what.add(x)
    del state.workers[W].processing[x]
    x.processing_on = None
    state.tasks["y"].n_waiting = 0
    with pytest.raises(InvalidState, match="waiting on nothing"):
        state.validate_state()
