"""In-process transport for tests and ``processes=False`` clusters.

This module owns ``inproc://<pid>/<n>`` addresses, the process-wide registry of
in-process listeners and the in-process comm.  Messages are handed to the peer as
Python objects (no encoding, no copy: the receiver sees the very objects sent, so
do not mutate a message after sending it).  The comm still batches per loop tick
and ``read`` still returns the list of messages sent in one tick.  There is no
handshake: both ends get the other side's ``info`` as ``peer_info`` and ``secret``
is accepted and ignored (same process).

The two ends may live on different event loops (threads); delivery then goes
through ``loop.call_soon_threadsafe``, in order.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import threading
from typing import Any, Callable, Iterable

from shoal.comm.core import Comm, Listener

__all__ = ["Inproc", "InprocListener", "connect", "make_listener", "new_address"]

_lock = threading.Lock()
_listeners: dict[str, "InprocListener"] = {}
_counter = itertools.count(1)


def new_address() -> str:
    """A fresh, unique ``inproc://<pid>/<n>`` address."""
    return f"inproc://{os.getpid()}/{next(_counter)}"


class Inproc(Comm):
    """One end of an in-process connection."""

    __slots__ = ("_peer", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, local_address: str, peer_address: str) -> None:
        super().__init__(loop, local_address, peer_address)
        self._peer: Inproc | None = None
        self._pending: list = []

    # ------------------------------------------------------------------ sending

    def send(self, msg: Any) -> None:
        if self._closed:
            raise self._closed_error()
        if not self._flush_pending:
            self._flush_at_end_of_tick()
        self._pending.append(msg)

    def send_many(self, msgs: Iterable[Any]) -> None:
        if self._closed:
            raise self._closed_error()
        if not self._flush_pending:
            self._check_loop()
        self._pending.extend(msgs)
        if self._pending and not self._flush_pending:
            self._flush_at_end_of_tick()

    def _flush(self) -> None:
        self._flush_pending = False
        batch = self._pending
        if not batch:
            return
        self._pending = []
        peer = self._peer
        if peer is not None:
            self._post(peer, peer._receive, batch)

    def _post(self, peer: "Inproc", fn: Callable[..., None], *args: Any) -> None:
        loop = peer.loop
        if loop is self._loop:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the peer's loop is closed: the peer is gone
            self._remote_closed()

    # ------------------------------------------------------------------ receiving

    def _receive(self, batch: list) -> None:
        if self._eof_exc is None:
            self._deliver(batch)

    def _remote_closed(self) -> None:
        self._pending = []
        self._peer = None
        if self._eof_exc is None:
            self._set_closed("connection closed by peer")

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        if self._closed:
            return
        if self._pending:
            self._flush()
        self._shutdown("closed locally")

    def abort(self) -> None:
        self._pending = []
        if not self._closed:
            self._shutdown("aborted locally")

    def _shutdown(self, reason: str) -> None:
        self._set_closed(reason, drop_inbox=True)
        peer, self._peer = self._peer, None
        if peer is not None:
            self._post(peer, peer._remote_closed)


class InprocListener(Listener):
    """Accepts in-process connections on an ``inproc://`` address."""

    def __init__(self, loc: str, handler: Any, *, secret: bytes | None, info: dict | None, max_packet_bytes: int) -> None:
        super().__init__(handler, secret=secret, info=info, max_packet_bytes=max_packet_bytes)
        self.address = f"inproc://{loc}" if loc.strip("/") else new_address()
        self.contact_address = self.address

    async def _start(self) -> None:
        with _lock:
            if self.address in _listeners:
                raise OSError(errno.EADDRINUSE, f"inproc address {self.address} is already in use")
            _listeners[self.address] = self

    def _stop_accepting(self) -> None:
        with _lock:
            if _listeners.get(self.address) is self:
                del _listeners[self.address]

    def accept_threadsafe(self, comm: Inproc) -> None:
        """Accept `comm` on the listener's loop, from any thread."""
        if asyncio._get_running_loop() is self._loop:
            self._accept(comm)
        else:
            self._loop.call_soon_threadsafe(self._accept, comm)


async def connect(
    loc: str, *, address: str, secret: bytes | None, info: dict | None, max_packet_bytes: int
) -> Inproc:
    """Connect to the in-process listener at ``inproc://loc``."""
    addr = f"inproc://{loc}"
    with _lock:
        listener = _listeners.get(addr)
    if listener is None or listener.stopping:
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"no in-process listener at {addr}")
    loop = asyncio.get_running_loop()
    client = Inproc(loop, new_address(), addr)
    server = Inproc(listener.loop, addr, client.local_address)
    client._peer = server
    server._peer = client
    client.peer_info = dict(listener.info)
    server.peer_info = dict(info or {})
    try:
        listener.accept_threadsafe(server)
    except RuntimeError:  # listener's loop is closed
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"in-process listener at {addr} is gone") from None
    return client


def make_listener(
    loc: str, handler: Any, *, secret: bytes | None, info: dict | None, max_packet_bytes: int
) -> InprocListener:
    return InprocListener(loc, handler, secret=secret, info=info, max_packet_bytes=max_packet_bytes)
