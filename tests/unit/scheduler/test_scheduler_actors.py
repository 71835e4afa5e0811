"""Actor tasks in the scheduler state machine: the `actor` annotation reaches the worker."""

from __future__ import annotations

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import (
    AddClient,
    AddWorker,
    ClientMsg,
    RemoveWorker,
    WorkerMsg,
)
from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.scheduler.state import SchedulerState

SPEC = dumps(((), {}))


def test_actor_annotation_is_sent_with_compute_task():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    s.handle_stimulus(AddWorker("s1", m.RegisterWorker("tcp://w:1", "w", 1, 0, {}, 1, "/tmp", {}, None)))
    s.handle_stimulus(AddClient("s2", "c"))
    tasks = (("counter", -1, SPEC, (), (0, 0), {"actor": True}), ("plain", -1, SPEC, (), (0, 1), None))
    out = s.handle_stimulus(ClientMsg("s3", "c", m.UpdateGraph(tasks, (), ("counter", "plain"))))
    sent = {i.msg.key: i.msg.actor for i in out if isinstance(i, ToWorker) and isinstance(i.msg, m.ComputeTask)}
    assert sent == {"counter": True, "plain": False}
    assert s.tasks["counter"].actor and not s.tasks["plain"].actor


def _state_with_workers(*addresses):
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    for addr in addresses:
        s.handle_stimulus(AddWorker("s", m.RegisterWorker(addr, addr, 1, 0, {}, 1, "/tmp", {}, None)))
    s.handle_stimulus(AddClient("s", "c"))
    return s


def _submit(s, key, actor=True):
    ann = {"actor": True} if actor else None
    out = s.handle_stimulus(ClientMsg("s", "c", m.UpdateGraph(((key, -1, SPEC, (), (0, 0), ann),), (), (key,))))
    [(addr, msg)] = [(i.address, i.msg) for i in out if isinstance(i, ToWorker) and isinstance(i.msg, m.ComputeTask)]
    return addr, msg


def _finish(s, addr, msg):
    return s.handle_stimulus(WorkerMsg("s", addr, m.TaskFinished(msg.key, msg.run_id, 8, "Counter", 0.0, 0.001, None)))


def test_actors_are_spread_over_workers():
    s = _state_with_workers("tcp://w1:1", "tcp://w2:1")
    first, msg = _submit(s, "a1")
    _finish(s, first, msg)
    second, _ = _submit(s, "a2")  # both workers are idle: the one without an actor gets it
    assert {first, second} == {"tcp://w1:1", "tcp://w2:1"}
    assert [t.key for t in s.workers[first].actors] == ["a1"]


def test_losing_the_actors_worker_cancels_it_even_with_proxies_elsewhere():
    s = _state_with_workers("tcp://w1:1", "tcp://w2:1")
    home, msg = _submit(s, "a")
    _finish(s, home, msg)
    other = next(a for a in s.workers if a != home)
    s.handle_stimulus(WorkerMsg("s", other, m.AddKeys({"a": 8})))  # a proxy fetched by a dependent
    assert s.tasks["a"].who_has == {s.workers[home], s.workers[other]}
    out = s.handle_stimulus(RemoveWorker("s", home, "killed"))
    [cancel] = [i.msg for i in out if isinstance(i, ToClient) and isinstance(i.msg, m.CancelledKeys)]
    assert cancel.keys == ("a",) and cancel.reason == "lost-actor" and home in cancel.msg
    frees = [i.msg.keys for i in out if isinstance(i, ToWorker) and isinstance(i.msg, m.FreeKeys)]
    assert frees == [("a",)] and "a" not in s.tasks


def test_plain_task_with_replica_survives_losing_one_holder():
    s = _state_with_workers("tcp://w1:1", "tcp://w2:1")
    home, msg = _submit(s, "t", actor=False)
    _finish(s, home, msg)
    other = next(a for a in s.workers if a != home)
    s.handle_stimulus(WorkerMsg("s", other, m.AddKeys({"t": 8})))
    s.handle_stimulus(RemoveWorker("s", home, "killed"))
    assert s.tasks["t"].state == "memory"


def test_released_actor_leaves_its_worker():
    s = _state_with_workers("tcp://w1:1")
    home, msg = _submit(s, "a")
    _finish(s, home, msg)
    s.handle_stimulus(ClientMsg("s", "c", m.ReleaseKeys(("a",))))
    assert not s.workers[home].actors and "a" not in s.tasks
