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
        assert any("the stimulus was refused, state is valid" in r.getMessage() for r in caplog.records)


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
