"""The client's outbox: every message to the scheduler, from any thread, in order.

Submits from user threads, releases from garbage collection, the sync primitives'
notices: all go through `Outbox.send`, which queues the message and schedules one flush
on the client's loop at the end of its current tick, so a burst of submits becomes one
packet and no timer adds latency. `Outbox.flush()` (on the loop) sends what is queued
now: code that then sends a request straight over the scheduler connection flushes
first, so the scheduler sees everything this client sent before it.

This is the door other modules use to talk to the scheduler through a client
(``client.outbox.send(msg)``, ``client.outbox.flush()``); the messages are the typed
records of `shoal.protocol.messages`.
"""

from __future__ import annotations

import collections
from typing import Any

from shoal import _loop
from shoal.comm.errors import CommClosedError
from shoal.exceptions import ClosedClientError
from shoal.protocol import messages as m

__all__ = ["Outbox"]


class Outbox:
    """The ordered queue of one client's messages to its scheduler."""

    __slots__ = ("client", "queue", "pending")

    def __init__(self, client: Any):
        self.client = client
        #: messages not yet handed to the scheduler connection
        self.queue: collections.deque = collections.deque()
        #: a flush is scheduled on the client's loop
        self.pending = False

    def send(self, msg: m.Message) -> None:
        """Queue `msg` for the scheduler, from any thread, preserving order. A closed
        client drops releases (nothing to release any more) and refuses the rest with
        `ClosedClientError`."""
        client = self.client
        if client.status in ("closing", "closed"):
            if type(msg) is m.ReleaseKeys:
                return
            raise ClosedClientError(f"{client} is closed")
        self.queue.append(msg)
        if not self.pending:
            self.pending = True
            loop = client._aloop
            if _loop.in_loop_thread(loop):
                loop.call_soon(self.flush)
            else:
                try:
                    loop.call_soon_threadsafe(self.flush)
                except RuntimeError:  # loop closed
                    self.pending = False

    def flush(self) -> None:
        """Send everything queued (on the client's loop)."""
        self.pending = False
        queue = self.queue
        client = self.client
        peer = client.scheduler_comm
        if peer is None or peer.closed:
            if client._started is not None or client.status == "running":
                queue.clear()
            return
        while queue:
            msg = queue.popleft()
            try:
                peer.send(msg)
                if type(msg) is m.UpdateGraph:
                    # one packet per graph batch: the scheduler decodes and ingests it
                    # before the next arrives, instead of holding the whole graph decoded
                    peer.comm.flush()
            except CommClosedError:
                queue.clear()
                return
