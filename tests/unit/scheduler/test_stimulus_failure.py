"""A state-machine handler that raises never leaves the scheduler running on an invalid
state: a failure that kept the invariants refuses the stimulus, one that broke them
stops the scheduler with a fatal error (issue 18)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shoal.scheduler.events import AddClient
from shoal.scheduler.server import Scheduler
from shoal.scheduler.state import SchedTask


def _failing(handler_of, exc_after):
    def handler(state, ev, recs):
        exc_after(state)
        raise RuntimeError("a bug in a handler")

    return {**handler_of, AddClient: handler}


@pytest.mark.parametrize("breaks_state", [False, True])
def test_a_failing_handler_is_refused_or_fatal(caplog, breaks_state):
    async def main():
        s = await Scheduler("inproc://", dashboard_address=None)
        try:
            def mutate(state):
                if breaks_state:  # a half-applied change: a task filed under the wrong key
                    state.tasks["a"] = SchedTask("b")

            s.state._EVENT_HANDLERS = _failing(type(s.state)._EVENT_HANDLERS, mutate)
            with pytest.raises(RuntimeError, match="a bug"):
                s.stimulate(AddClient("sid", "c"))
            if breaks_state:
                await asyncio.wait_for(s.finished(), 10)
            return s.status, s.status_reason
        finally:
            await s.close()

    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        status, reason = asyncio.run(main())
    if breaks_state:
        assert status == "closed" and reason.startswith("fatal: state machine failed")
        assert any(r.levelno == logging.CRITICAL and "FATAL" in r.getMessage() for r in caplog.records)
    else:
        assert status == "running" and reason is None
        assert any("the stimulus was refused" in r.getMessage() for r in caplog.records)


def test_a_worker_whose_state_machine_breaks_its_state_closes(caplog):
    from shoal.worker.server import Worker
    from shoal.worker.state import FreeKeysEvent

    async def main():
        async with await Scheduler("inproc://", dashboard_address=None) as s:
            w = await Worker(s.address)
            try:
                def broken(state, ev):
                    state.tasks["a"] = object()  # filed under a key it does not have
                    raise RuntimeError("a bug in a worker handler")

                w.state._HANDLERS = {**type(w.state)._HANDLERS, FreeKeysEvent: broken}
                with pytest.raises(RuntimeError, match="a bug"):
                    w._handle([FreeKeysEvent("sid", ("x",))])
                await asyncio.wait_for(w.finished(), 10)
                return w.status
            finally:
                await w.close()

    with caplog.at_level(logging.ERROR, logger="shoal.worker"):
        status = asyncio.run(main())
    assert status == "closed"
    assert any(r.levelno == logging.CRITICAL and "FATAL" in r.getMessage() for r in caplog.records)


def test_what_a_failed_stimulus_applied_is_sent_so_no_peer_is_left_behind(caplog):
    """A packet's first message releases a result; the next one makes a handler raise
    after a consistent partial change. The state stays valid, so the failure is refused,
    what was applied stands, and its messages still go out: the worker is told to free
    the result the scheduler forgot (they were dropped with the failed stimulus, and the
    worker kept the data for good)."""
    from dask._task_spec import Task
    from task_functions import inc

    from shoal.protocol import messages as m
    from shoal.protocol.serialize import dumps
    from shoal.scheduler.events import ClientMsg
    from shoal.worker.server import Worker

    partly = []

    def mutate(state):  # a consistent half of a change: a client is registered
        partly.append(state.clients.setdefault("half-done", type(state.clients["c0"])("half-done")))

    async def main():
        async with await Scheduler("inproc://", dashboard_address=None) as s:
            async with await Worker(s.address) as w:
                s.clients["c0"] = _Inbox()  # the connection of client c0
                s.stimulate(AddClient("sid-0", "c0"))
                graph = m.UpdateGraph((("a", -1, dumps(Task("a", inc, 1)), (), (0,), None),), (), ("a",))
                s.stimulate(ClientMsg("sid-0", "c0", graph))
                await _until(lambda: "a" in w.store)
                s.state._EVENT_HANDLERS = _failing(type(s.state)._EVENT_HANDLERS, mutate)
                with pytest.raises(RuntimeError, match="a bug"):
                    s.stimulate(ClientMsg("sid-1", "c0", m.ReleaseKeys(("a",))), AddClient("sid-1", "c1"))
                assert s.status == "running"
                s.state.validate_state()
                assert "a" not in s.state.tasks  # the release was applied ...
                assert s.state.clients["half-done"] is partly[0]  # ... and the failed half stands
                await _until(lambda: "a" not in w.store)  # ... and the worker heard of it

    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        asyncio.run(main())
    assert any("the stimulus was refused" in r.getMessage() for r in caplog.records)


class _Inbox:
    """Stands for a client's connection: keeps what the scheduler sends it."""

    closed = False

    async def close(self):
        self.closed = True

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


async def _until(cond, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
