"""`SetRetiring`: a retiring worker gets no new task (queued or stolen) until it is
un-marked; the others keep working. Pure state machine, no I/O."""

from __future__ import annotations

import itertools

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddWorker, ClientMsg, SetRetiring
from shoal.scheduler.state import SchedulerState

W1, W2 = "tcp://w1:1", "tcp://w2:1"
_sid = itertools.count()


def sid() -> str:
    return f"r{next(_sid)}"


def make_state(*workers):
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    for addr in workers:
        s.handle_stimulus(AddWorker(sid(), m.RegisterWorker(addr, addr, 1, 0, {}, 1, "/tmp", {}, None)))
    return s


def submit(s, keys):
    wire = tuple((k, -1, dumps(((), {})), (), (0, i), None) for i, k in enumerate(keys))
    s.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), tuple(keys))))


def test_retiring_worker_gets_no_new_tasks():
    s = make_state(W1, W2)
    s.handle_stimulus(SetRetiring(sid(), [W1]))
    submit(s, [f"t{i}" for i in range(6)])
    assert not s.workers[W1].processing
    assert s.workers[W2].processing
    assert all(ts.processing_on is None or ts.processing_on.address == W2 for ts in s.tasks.values())
    s.validate_state()


def test_only_retiring_workers_tasks_wait_then_flow_when_unmarked():
    s = make_state(W1)
    s.handle_stimulus(SetRetiring(sid(), [W1, "tcp://unknown:1"]))
    submit(s, ["a", "b"])
    assert {ts.state for ts in s.tasks.values()} == {"queued"}
    s.handle_stimulus(SetRetiring(sid(), [W1], False))
    assert {ts.state for ts in s.tasks.values()} == {"processing"}
    s.validate_state()
