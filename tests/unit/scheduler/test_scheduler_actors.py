"""Actor tasks in the scheduler state machine: the `actor` annotation reaches the worker."""

from __future__ import annotations

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg
from shoal.scheduler.instructions import ToWorker
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
