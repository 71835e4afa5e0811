"""Helpers the transport tests share (tests/integration/comm/): run a coroutine on a
fresh event loop (asyncio's or uvloop's) under a deadline, and an echo handler."""

from __future__ import annotations

import asyncio

from shoal.comm import CommClosedError

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

#: the event loops the transports are tested on
LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


def run(coro, loop: str = "asyncio", timeout: float = 30):
    """Run `coro` on a new `loop` ("asyncio" or "uvloop"), failing after `timeout` s."""

    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    if loop == "uvloop":
        return uvloop.run(guarded())
    return asyncio.run(guarded())


async def echo(comm):
    """A listener's handler that sends every packet back until the comm closes."""
    while True:
        try:
            msgs = await comm.read()
        except CommClosedError:
            return
        comm.send_many(msgs)
