"""One connection as a `Peer`: typed messages both ways plus request/reply; and a pool.

A `Peer` reads packets from its `Comm`, turns wire tuples into `Message` records, answers
`Request`s with the matching handler (a plain function at once, a coroutine in a task
the peer owns), resolves the futures of its own requests from `Reply`s, and hands every
other message of a packet to `on_messages` in one call, so a whole batch becomes one
stimulus. Whatever one connection sends starts being handled in the order sent. Errors in
handlers travel back pickled.

Validation at the edge: a packet is decoded whole (`from_wire` checks every field of every
message) and then offered to the owner's `accepts(peer, msgs)` (role permissions, request
arguments; see `shoal.protocol.requests`) before any of it is handled. A packet with one
bad message closes the connection (`reject`): nothing of it is handled, the reason is
logged (rate-limited: `shoal.log_limit`), and the owner sees the connection end.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.background import BackgroundTasks
from shoal.comm import connect
from shoal.comm.errors import CommClosedError
from shoal.log_limit import limiter
from shoal.protocol.messages import Message, ProtocolError, Reply, Request, from_wire
from shoal.protocol.serialize import Pickled, dumps, loads

logger = logging.getLogger("shoal.rpc")
_limited = limiter(logger)

#: A handler is called as ``handler(peer, **kwargs)``. A coroutine function always runs in
#: a task; a plain function is answered at once, unless it returns an awaitable (its slow
#: path), which a task then awaits. Requests of one connection start in the order sent.
Handler = Callable[..., Any]


#: request id of one-way calls (`Peer.notify`): their replies resolve nothing
NOTIFY_ID = 0


def _describe_error(value: Any) -> str:
    try:
        return repr(loads(value)) if isinstance(value, Pickled) else str(value)
    except Exception:
        return "<an error that cannot be loaded here>"


def _pickle_error(e: Exception) -> Pickled:
    try:
        return dumps(e)
    except Exception:
        return dumps(RuntimeError(f"{type(e).__name__}: {e}"))


class RemoteError(Exception):
    """A remote handler failed with an exception that could not be rebuilt here."""


def _raise_remote(value: Any) -> None:
    if isinstance(value, Pickled):
        try:
            exc = loads(value)
        except Exception as e:  # the exception type is not importable here
            raise RemoteError(f"remote call failed and its error could not be loaded: {e}") from None
        if isinstance(exc, BaseException):
            raise exc
    raise RemoteError(str(value))


class Peer:
    _ids = itertools.count(1)

    def __init__(
        self,
        comm: Any,
        handlers: dict[str, Handler] | None = None,
        on_messages: Callable[[Peer, list[Message]], None] | None = None,
        address: str | None = None,
        accepts: Callable[[Peer, list[Message]], str | None] | None = None,
    ):
        self.comm = comm
        #: the address this peer is known by (default: the comm's); a client that reaches
        #: its scheduler in-process still names the scheduler's network address
        self._address = address
        self.handlers = handlers or {}
        self.on_messages = on_messages
        #: the owner's check of a decoded packet: None if it may be handled, else why not
        self.accepts = accepts
        #: why this connection was closed for breaking the protocol (None: it did not)
        self.rejected: str | None = None
        self.role: str | None = None  # set by the owner once the peer says who it is
        self.ident: Any = None
        self._pending: dict[int, asyncio.Future] = {}
        #: handler tasks of requests that wait (owned: cancelled and awaited on close)
        self._tasks = BackgroundTasks("a connection")
        self._reader: asyncio.Task | None = None
        #: `time.monotonic()` when the last packet arrived (for liveness checks)
        self.last_seen = time.monotonic()

    @property
    def address(self) -> str:
        return self._address or self.comm.peer_address

    @property
    def closed(self) -> bool:
        return self.comm.closed

    def send(self, msg: Message) -> None:
        self.comm.send(msg.to_wire())

    @property
    def reader(self) -> asyncio.Task | None:
        """The read-loop task once `start` ran it (it ends when the connection closes)."""
        return self._reader

    def start(self) -> asyncio.Task:
        """Run the read loop as a task (owned by this peer; `close` cancels it)."""
        self._reader = asyncio.ensure_future(self.run())
        return self._reader

    async def run(self) -> None:
        """Read until the connection closes."""
        comm = self.comm
        try:
            while self.rejected is None:
                # no local keeps the packet: a big graph batch is freed as soon as it
                # has been handled, not when the next packet arrives
                self._dispatch(await comm.read())
                self.last_seen = time.monotonic()
        except (CommClosedError, OSError, EOFError):
            pass
        finally:
            self._fail_pending()

    def reject(self, reason: str) -> None:
        """Close this connection because the peer broke the protocol (logged, rate-limited)."""
        if self.rejected is None:
            self.rejected = reason
            _limited.warning("bad-message", "Closing connection from %s: %s", self.address, reason)
        self.comm.abort()

    def _dispatch(self, batch: Any) -> None:
        if self.rejected is not None:
            return
        try:
            decoded = [from_wire(wire) for wire in batch]
        except ProtocolError as e:
            return self.reject(str(e))
        except TypeError:
            return self.reject(f"a packet that is not a list of messages: {str(batch)[:80]!r}")
        if self.accepts is not None:
            problem = self.accepts(self, decoded)
            if problem is not None:
                return self.reject(problem)
        msgs: list[Message] = []  # consecutive plain messages, delivered as one batch
        deferred = False  # a request of this packet waits in a task: what follows queues behind it
        for msg in decoded:
            if type(msg) is Request:
                if msgs:
                    self._deliver(msgs, deferred)
                    msgs = []
                if deferred:
                    self._spawn(self._answer(msg))
                else:
                    deferred = self._answer_now(msg)
            elif type(msg) is Reply:
                if msg.id == NOTIFY_ID:
                    if not msg.ok:
                        logger.warning("a one-way call to %s failed: %s", self.address, _describe_error(msg.value))
                    continue
                fut = self._pending.pop(msg.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            else:
                msgs.append(msg)
        if msgs:
            self._deliver(msgs, deferred)

    def _deliver(self, msgs: list[Message], deferred: bool) -> None:
        if deferred:
            self._spawn(self._handle_messages_later(msgs))
        else:
            self._handle_messages(msgs)

    async def _handle_messages_later(self, msgs: list[Message]) -> None:
        self._handle_messages(msgs)

    def _handle_messages(self, msgs: list[Message]) -> None:
        if self.on_messages is None:
            logger.warning("unexpected messages from %s: %s", self.address, msgs[:3])
            return
        try:
            self.on_messages(self, msgs)
        except Exception:
            logger.exception("error handling messages from %s", self.address)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        self._tasks.spawn(coro)

    def _call_handler(self, req: Request) -> Any:
        handler = self.handlers.get(req.name)
        if handler is None:
            raise ValueError(f"unknown operation {req.name!r}")
        return handler(self, **(req.kwargs if isinstance(req.kwargs, dict) else {}))

    def _answer_now(self, req: Request) -> bool:
        """Answer `req` without a task when its handler is a plain function that returns
        a value (the fast path of hot calls); True if the answer had to wait in a task
        (a coroutine handler, or a plain handler that returned an awaitable)."""
        try:
            value = self._call_handler(req)
        except Exception as e:
            self._reply(Reply(req.id, False, _pickle_error(e)))
            return False
        if inspect.isawaitable(value):
            self._spawn(self._answer(req, value))
            return True
        self._reply(Reply(req.id, True, value))
        return False

    async def _answer(self, req: Request, pending: Any = None) -> None:
        try:
            value = self._call_handler(req) if pending is None else pending
            if inspect.isawaitable(value):
                value = await value
            reply = Reply(req.id, True, value)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            reply = Reply(req.id, False, _pickle_error(e))
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        if not self.comm.closed:
            try:
                self.send(reply)
            except CommClosedError:
                pass

    def notify(self, name: str, /, **kwargs: Any) -> None:
        """Call `name` on the other side without waiting for its answer (a failure is
        logged when its reply arrives). Calls on one connection run in the order sent."""
        self.send(Request(NOTIFY_ID, name, kwargs))

    async def request_raw(self, name: str, /, **kwargs: Any) -> Reply:
        """Call `name` on the other side; return the `Reply` without interpreting it."""
        if self.comm.closed:
            raise CommClosedError(f"connection to {self.address} is closed")
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send(Request(rid, name, kwargs))
        try:
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def request(self, name: str, /, **kwargs: Any) -> Any:
        """Call `name` on the other side and return its value, or raise its error."""
        reply = await self.request_raw(name, **kwargs)
        if not reply.ok:
            _raise_remote(reply.value)
        return reply.value

    def _fail_pending(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CommClosedError(f"connection to {self.address} closed"))
        self._pending.clear()

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what was sent (for at most `timeout` s: a peer may have stopped
        reading), then drop the connection and cancel the tasks this peer owns."""
        try:
            await asyncio.wait_for(self.comm.close(), timeout)
        except BaseException:
            self.comm.abort()
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
            try:
                await reader
            except BaseException:
                pass
        await self._tasks.close()
        self._fail_pending()


class ConnectionPool:
    """One `Peer` per remote address, connected on first use, closed together."""

    def __init__(
        self,
        *,
        secret: bytes | None,
        timeout: float,
        info: dict | None = None,
        handlers: dict[str, Handler] | None = None,
        retry_refused: bool = True,
    ):
        self.secret = secret
        self.timeout = timeout
        #: False: a refused connection fails at once (see `shoal.comm.connect`)
        self.retry_refused = retry_refused
        self.info = info
        self.handlers = handlers
        self.peers: dict[str, Peer] = {}
        self._connecting: dict[str, asyncio.Future] = {}
        self.closed = False

    async def get(self, address: str) -> Peer:
        peer = self.peers.get(address)
        if peer is not None and not peer.closed:
            return peer
        if self.closed:
            raise CommClosedError("connection pool is closed")
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._connecting[address] = fut
        try:
            comm = await connect(
                address, secret=self.secret, timeout=self.timeout, info=self.info, retry_refused=self.retry_refused
            )
            peer = Peer(comm, self.handlers)
            # a connection that ends leaves the pool (a peer that died is not kept for good)
            peer.start().add_done_callback(lambda _, p=peer: self._lost(address, p))
            self.peers[address] = peer
            fut.set_result(peer)
            return peer
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._connecting.pop(address, None)

    def _lost(self, address: str, peer: Peer) -> None:
        """`peer`'s connection ended: it leaves the pool, and the handlers it was running
        for the other side stop (nobody could receive their answers)."""
        if self.peers.get(address) is peer:
            del self.peers[address]
        peer._tasks.cancel()

    def forget(self, address: str) -> None:
        peer = self.peers.pop(address, None)
        if peer is not None:
            peer.comm.abort()

    async def close(self) -> None:
        self.closed = True
        peers, self.peers = list(self.peers.values()), {}
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
