"""Named holds, client wants on an extension's behalf, and the restart event: the state
machine events extensions use instead of pretend clients (`HoldKeys`, `ReleaseHold`,
`WantKeys`, `Restart`)."""

from __future__ import annotations

import itertools

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import (
    AddClient,
    AddWorker,
    ClientMsg,
    HoldKeys,
    ReleaseHold,
    RemoveClient,
    Restart,
    WantKeys,
    WorkerMsg,
)
from shoal.scheduler.instructions import ToClient
from shoal.scheduler.state import SchedulerState

SPEC = dumps(((), {}))
W = "tcp://w1:1"
_sid = itertools.count()


def sid() -> str:
    return f"h{next(_sid)}"


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    msg = m.RegisterWorker(W, W, 2, 0, {}, 1, "/tmp", {}, None)
    s.handle_stimulus(AddWorker(sid(), msg), AddClient(sid(), "c"))
    yield s
    s.validate_state()


def computed(s, *keys):
    wire = tuple((k, -1, SPEC, (), (0, i), None) for i, k in enumerate(keys))
    s.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), keys)))
    for k in keys:
        ts = s.tasks[k]
        s.handle_stimulus(WorkerMsg(sid(), W, m.TaskFinished(k, ts.run_id, 8, "int", 0.0, 0.001, None)))
        assert s.tasks[k].state == "memory"


def to_clients(out):
    return [i for i in out if isinstance(i, ToClient)]


def test_a_hold_keeps_keys_after_their_client_leaves_and_is_no_client(state):
    computed(state, "x", "y")
    out = state.handle_stimulus(HoldKeys(sid(), "published-d", ("x", "unknown")))
    assert to_clients(out) == []  # nothing is ever sent to a hold
    assert "published-d" not in state.clients and "published-d" in state.holds
    state.handle_stimulus(RemoveClient(sid(), "c"))
    assert state.tasks["x"].state == "memory"
    assert "y" not in state.tasks  # nobody held y
    state.handle_stimulus(ReleaseHold(sid(), "published-d", ("x",)))
    assert "x" not in state.tasks and state.holds["published-d"].wants == set()
    state.handle_stimulus(ReleaseHold(sid(), "published-d"))
    assert state.holds == {}


def test_a_hold_on_a_released_task_recomputes_it(state):
    wire = (("z", -1, SPEC, (), (0, 0), None),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ())))
    assert state.tasks["z"].state == "released"
    state.handle_stimulus(HoldKeys(sid(), "variable-v", ("z",)))
    assert state.tasks["z"].state == "processing"


def test_a_hold_cannot_take_a_clients_name(state):
    with pytest.raises(ValueError, match="client"):
        state.handle_stimulus(HoldKeys(sid(), "c", ()))


def test_want_keys_makes_a_connected_client_want_them_and_tells_it(state):
    computed(state, "x")
    state.handle_stimulus(AddClient(sid(), "d"))
    out = state.handle_stimulus(WantKeys(sid(), "d", ("x", "gone")))
    msgs = {type(i.msg): i.msg for i in to_clients(out) if i.client_id == "d"}
    assert msgs[m.KeyInMemory].key == "x"
    assert msgs[m.CancelledKeys].keys == ("gone",)  # as for desire-keys: it would wait forever
    assert state.clients["d"] in state.tasks["x"].who_wants
    # a client that left meanwhile is not brought back
    state.handle_stimulus(RemoveClient(sid(), "d"))
    state.handle_stimulus(WantKeys(sid(), "d", ("x",)))
    assert "d" not in state.clients


def test_restart_cancels_every_clients_futures_and_empties_the_holds(state):
    computed(state, "x", "y")
    state.handle_stimulus(HoldKeys(sid(), "queue-q", ("y",)))
    out = state.handle_stimulus(Restart(sid()))
    [cancel] = [i.msg for i in to_clients(out)]
    assert isinstance(cancel, m.CancelledKeys) and set(cancel.keys) == {"x", "y"}
    assert cancel.reason == m.RESTART_REASON
    assert state.tasks == {} and state.holds["queue-q"].wants == set()


def test_fire_and_forget_is_a_hold(state):
    wire = (("f", -1, SPEC, (), (0, 0), None),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("f",))))
    state.handle_stimulus(ClientMsg(sid(), "c", m.DesireKeys(("f",), "fire-and-forget")))
    assert "fire-and-forget" in state.holds and "fire-and-forget" not in state.clients
    state.handle_stimulus(RemoveClient(sid(), "c"))
    assert state.tasks["f"].state == "processing"
    ts = state.tasks["f"]
    out = state.handle_stimulus(WorkerMsg(sid(), W, m.TaskFinished("f", ts.run_id, 8, "int", 0.0, 0.001, None)))
    assert to_clients(out) == [] and "f" not in state.tasks
