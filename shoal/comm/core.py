"""Transport-independent comm API: the ``Comm`` and ``Listener`` contracts, ``connect`` and ``listen``.

This module owns what every transport shares:

* :class:`Comm`: a message connection.  ``send`` is non-blocking and batches by
  event-loop tick (the first ``send`` in a tick schedules one flush with
  ``loop.call_soon``; everything sent before it runs goes out as ONE packet), so
  there is no timer and no added latency when idle, and big batches under load.
  ``read`` returns the next packet's list of messages.
* :class:`Listener`: accepts connections, runs the transport's handshake and then
  the user's handler, each connection in a task it owns; ``stop`` cancels and awaits
  them and closes their comms.  A failed handshake drops only that connection and is
  logged as a warning on the ``shoal.comm`` logger, rate-limited (`shoal.log_limit`).
* :func:`connect` / :func:`listen`: dispatch on the address scheme (``tcp://``,
  ``inproc://``); ``connect`` retries with a short backoff until its timeout.

A comm belongs to the event loop it was created on: call ``send``, ``read`` and
``close`` from that loop's thread only.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import inspect
import logging
import random
from collections import deque
from typing import Any, Awaitable, Callable, Iterable

from shoal.comm.addressing import parse_address
from shoal.comm.errors import AuthenticationError, CommClosedError
from shoal.log_limit import limiter
from shoal.protocol.handshake import as_secret

__all__ = [
    "Comm",
    "Listener",
    "connect",
    "listen",
    "DEFAULT_MAX_PACKET",
    "HANDSHAKE_TIMEOUT",
    "logger",
]

logger = logging.getLogger("shoal.comm")
#: handshake failures and broken packets are logged at most once per interval, with a count
#: rate-limited warnings of the comm layer (`shoal.log_limit`), shared by the transports
log_limited = limiter(logger)

#: Cap on the size of one packet (sum of its frame lengths); checked before allocating.
DEFAULT_MAX_PACKET = 8 * 1024**3
#: A listener drops a connection whose handshake takes longer than this (seconds).
HANDSHAKE_TIMEOUT = 10.0

_get_running_loop = asyncio._get_running_loop

Handler = Callable[["Comm"], Awaitable[Any]]


class Comm(abc.ABC):
    """One message connection.  See the module docstring for the batching contract.

    Subclasses implement ``send``, ``send_many``, ``close`` and ``abort``, and feed
    the shared inbox with :meth:`_deliver` / :meth:`_set_closed`.
    """

    __slots__ = (
        "local_address",
        "peer_address",
        "peer_info",
        "_loop",
        "_inbox",
        "_waiters",
        "_closed",
        "_eof_exc",
        "_flush_pending",
        "__weakref__",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, local_address: str = "", peer_address: str = "") -> None:
        self.local_address = local_address
        self.peer_address = peer_address
        self.peer_info: dict = {}
        self._loop = loop
        self._inbox: deque = deque()
        self._waiters: deque[asyncio.Future] = deque()
        self._closed = False  # no more sending (and, once _eof_exc is set, no more reading)
        self._eof_exc: CommClosedError | None = None
        #: a `_flush` is scheduled for the end of this loop tick
        self._flush_pending = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this comm belongs to."""
        return self._loop

    # ------------------------------------------------------------------ the end-of-tick flush

    def _flush_at_end_of_tick(self) -> None:
        """The one end-of-tick flush of every transport: what is sent until the loop's
        current iteration ends goes out as one packet (`_flush`), with no timer; call it
        after queueing, when `_flush_pending` is false."""
        self._check_loop()
        self._flush_pending = True
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:  # pragma: no cover - every transport has its own
        """Hand what was queued to the transport (clears `_flush_pending` first)."""
        self._flush_pending = False

    # ------------------------------------------------------------------ API

    @abc.abstractmethod
    def send(self, msg: Any) -> None:
        """Queue ``msg`` for the current tick's packet.  Non-blocking.

        Raises :class:`CommClosedError` if the comm is closed, ``TypeError`` if the
        message cannot be encoded by this transport.
        """

    @abc.abstractmethod
    def send_many(self, msgs: Iterable[Any]) -> None:
        """Queue several messages (same as calling :meth:`send` for each)."""

    def flush(self) -> None:
        """Hand what this tick queued to the transport now, not at the end of the tick:
        for a message that must be on its way before something else happens."""
        if self._flush_pending:
            self._flush()

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending messages, then close.  Idempotent."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Close immediately, dropping anything pending.  Idempotent."""

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self) -> list | tuple:
        """The next packet's messages.  Raises :class:`CommClosedError` once closed.

        After the peer closes, packets already received are still returned first.
        """
        inbox = self._inbox
        while True:
            if inbox:
                msgs = inbox.popleft()
                self._consumed()
                return msgs
            exc = self._eof_exc
            if exc is not None:
                raise CommClosedError(*exc.args) from exc.__cause__
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.cancelled() and waiter.done():
                    self._wake_one()  # pass the wake-up on to another reader
                else:
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
                raise

    # ------------------------------------------------------------------ for subclasses

    def _consumed(self) -> None:
        """Called after a packet is taken from the inbox (flow-control hook)."""

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def _deliver(self, msgs: Any) -> None:
        self._inbox.append(msgs)
        if self._waiters:
            self._wake_one()

    def _set_closed(self, reason: str, cause: BaseException | None = None, *, drop_inbox: bool = False) -> None:
        """Mark the comm closed; readers get CommClosedError once the inbox is drained."""
        self._closed = True
        if drop_inbox:
            self._inbox.clear()
        if self._eof_exc is None:
            exc = CommClosedError(f"Connection {self.local_address} -> {self.peer_address} closed: {reason}")
            exc.__cause__ = cause
            self._eof_exc = exc
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)

    def _check_loop(self) -> None:
        if _get_running_loop() is not self._loop:
            raise RuntimeError(
                f"{type(self).__name__}.send must be called from the thread running the comm's event loop"
            )

    def _closed_error(self) -> CommClosedError:
        exc = self._eof_exc
        if exc is not None:
            return CommClosedError(*exc.args)
        return CommClosedError(f"Connection {self.local_address} -> {self.peer_address} is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.local_address} -> {self.peer_address} {state}>"


class Listener(abc.ABC):
    """Accepts connections on :attr:`address` and runs ``handler(comm)`` for each.

    The comm lives as long as its handler: when the handler returns (or raises, which
    is logged), the listener closes the comm.  ``stop()`` stops accepting, cancels
    and awaits the handler tasks and closes their comms.
    """

    address: str
    contact_address: str
    #: Whether :meth:`_handshake` must run (under HANDSHAKE_TIMEOUT) before the handler.
    _has_handshake = False

    def __init__(self, handler: Handler, *, secret: bytes | None, info: dict | None, max_packet_bytes: int) -> None:
        self._handler = handler
        self._secret = secret
        self.info = info or {}
        self.max_packet_bytes = max_packet_bytes
        self._tasks: set[asyncio.Task] = set()
        self._comms: set[Comm] = set()
        self._stopping = False
        self._loop = asyncio.get_running_loop()

    @property
    def stopping(self) -> bool:
        """`stop` was called: no new connection is accepted."""
        return self._stopping

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the listener accepts and serves connections on."""
        return self._loop

    @abc.abstractmethod
    async def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop_accepting(self) -> None: ...

    async def _wait_closed(self) -> None:
        return None

    async def _handshake(self, comm: Comm) -> None:
        """Transport-specific server side of the handshake (none by default)."""

    # ------------------------------------------------------------------ connections

    def _accept(self, comm: Comm) -> None:
        """Called on the listener's loop for every new connection."""
        if self._stopping:
            comm.abort()
            return
        self._comms.add(comm)
        task = self._loop.create_task(self._serve(comm))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, comm: Comm) -> None:
        try:
            try:
                if self._has_handshake:
                    await asyncio.wait_for(self._handshake(comm), HANDSHAKE_TIMEOUT)
            except asyncio.CancelledError:
                comm.abort()
                raise
            except Exception as exc:
                if isinstance(exc, asyncio.TimeoutError):
                    exc = TimeoutError(f"handshake not completed within {HANDSHAKE_TIMEOUT} s")
                log_limited.warning("handshake", "Dropped connection from %s: handshake failed: %s", comm.peer_address, exc)
                comm.abort()
                return
            try:
                result = self._handler(comm)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                comm.abort()
                raise
            except Exception:
                logger.exception("Handler for connection from %s failed", comm.peer_address)
            if not comm.closed:
                try:
                    await comm.close()
                except asyncio.CancelledError:
                    comm.abort()
                    raise
                except Exception:
                    comm.abort()
        finally:
            self._comms.discard(comm)

    # ------------------------------------------------------------------ lifecycle

    async def stop(self) -> None:
        """Stop accepting, cancel and await handler tasks, close their comms.  Idempotent."""
        if not self._stopping:
            self._stopping = True
            self._stop_accepting()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for c in list(self._comms):
            c.abort()
        self._comms.clear()
        await self._wait_closed()

    async def __aenter__(self) -> "Listener":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'address', '?')}>"


# ---------------------------------------------------------------------- dispatch

_BACKEND_MODULES = {"tcp": "shoal.comm.tcp", "inproc": "shoal.comm.inproc"}


def _backend(scheme: str) -> Any:
    try:
        name = _BACKEND_MODULES[scheme]
    except KeyError:
        raise ValueError(f"no transport for address scheme {scheme!r}") from None
    return importlib.import_module(name)


async def connect(
    address: str,
    *,
    secret: bytes | None = None,
    timeout: float = 30.0,
    info: dict | None = None,
    max_packet_bytes: int = DEFAULT_MAX_PACKET,
    retry_refused: bool = True,
) -> Comm:
    """Connect to ``address`` and run the handshake; returns a ready :class:`Comm`.

    Refused or reset connections are retried with a short backoff until ``timeout``
    seconds have passed, then ``OSError("Timed out trying to connect to ...")`` is
    raised.  Authentication and protocol errors are raised at once. With
    ``retry_refused=False`` a refused connection raises its ``ConnectionRefusedError`` at
    once: for a peer known to have been listening (another worker), a refusal means its
    process is gone, and waiting out ``timeout`` would only stall whoever needs its data.
    """
    scheme, loc = parse_address(address)
    backend = _backend(scheme)
    secret = as_secret(secret)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    last_error: BaseException | None = None
    while True:
        remaining = deadline - loop.time()
        try:
            return await asyncio.wait_for(
                backend.connect(loc, address=address, secret=secret, info=info, max_packet_bytes=max_packet_bytes),
                max(remaining, 0.001),
            )
        except AuthenticationError:
            raise
        except asyncio.TimeoutError:
            last_error = TimeoutError("connection attempt timed out")
        except ConnectionRefusedError as exc:
            if not retry_refused:
                raise
            last_error = exc
        except OSError as exc:
            last_error = exc
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await asyncio.sleep(min(delay * random.uniform(0.75, 1.25), remaining))
        delay = min(delay * 2, 0.25)
    raise OSError(f"Timed out trying to connect to {address} after {timeout} s: {last_error}") from last_error


async def listen(
    address: str,
    handler: Handler,
    *,
    secret: bytes | None = None,
    info: dict | None = None,
    max_packet_bytes: int = DEFAULT_MAX_PACKET,
) -> Listener:
    """Start listening on ``address``; ``handler(comm)`` runs for each accepted connection.

    ``tcp://127.0.0.1:0`` picks a free port; ``tcp://:0`` and ``tcp://`` mean
    127.0.0.1.  ``Listener.address`` is the actual address.
    """
    scheme, loc = parse_address(address)
    backend = _backend(scheme)
    listener = backend.make_listener(
        loc, handler, secret=as_secret(secret), info=info, max_packet_bytes=max_packet_bytes
    )
    await listener._start()
    return listener
