"""Actors: stateful objects that live on one worker, called through a proxy.

`client.submit(Counter, actor=True)` runs ``Counter()`` on a worker, which keeps the
object (`WorkerState.actors`) and serves an `Actor` proxy of it as the task's result.
The proxy's methods return an `ActorFuture` at once; attributes are read remotely.

The call path is one `actor-call` message from the caller straight to the worker that
holds the actor and one `actor-result` back, on a connection the caller's client keeps
per worker (`_Channels`); the scheduler is not involved. On the worker, plain methods
run in call order on one thread per worker (so an actor's state needs no lock, and a
long method does not block the worker's event loop); ``async def`` methods run on the
worker's event loop and may interleave at their ``await`` points. Attribute reads go
through the same thread, so they see the effect of every call sent before them.

Lifetime: the actor is a task key like any other. A proxy obtained from
`Future.result()` / `Client.gather` holds a reference on the key (as a `Future` does),
so the actor lives while any future or such proxy refers to it. Proxies that arrive in
a task as arguments hold none: the task's dependency keeps the actor alive while it
runs, and a proxy kept in a worker's memory must not pin the key forever.

This module imports no client: a proxy finds its client through
`shoal._context.provider("get_client")` and is handed the client's `Future` type, so
the worker can build proxies and the ladder has no edge up from here.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from collections import deque
from collections.abc import Generator
from typing import Any

from dask._task_spec import TaskRef

from shoal._context import provider, task_state
from shoal._loop import in_loop_thread
from shoal.background import BackgroundTasks
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.utils import parse_timeout

__all__ = ["Actor", "ActorFuture", "BaseActorFuture", "EagerActorFuture"]


class BaseActorFuture:
    """The future of one actor method call: `result(timeout)`, `done()`, and ``await``."""

    __slots__ = ()

    def result(self, timeout: Any = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def done(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return "<ActorFuture>"

    def _on_done(self, callback: Any) -> None:  # pragma: no cover - abstract
        """Call `callback(self)` once the call is done (for `as_completed`)."""
        raise NotImplementedError


class EagerActorFuture(BaseActorFuture):
    """An already computed call: an actor calling an actor on its own worker."""

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def result(self, timeout: Any = None) -> Any:
        return self._value

    def done(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, Any]:
        return self._value
        yield  # pragma: no cover

    def _on_done(self, callback: Any) -> None:
        callback(self)


_UNSET = object()


class ActorFuture(BaseActorFuture):
    """A call in flight. Completed on the client's event loop; `result` blocks on a lock
    (no loop round trip), ``await`` waits on an asyncio future of that loop."""

    __slots__ = ("_callbacks", "_loaded", "_lock", "_loop", "_ok", "_value", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._lock.acquire()  # released when the outcome arrives
        self._ok: bool | None = None
        self._value: Any = None
        self._loaded: Any = _UNSET
        self._waiter: asyncio.Future | None = None
        self._callbacks: list | None = None

    def _set(self, ok: bool, value: Any) -> None:
        """Called once, on the loop thread."""
        self._value = value
        self._ok = ok
        self._lock.release()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._callbacks:
            for callback in self._callbacks:
                callback(self)
            self._callbacks = None

    def _on_done(self, callback: Any) -> None:
        def register() -> None:  # on the loop thread, as `_set` is
            if self._ok is not None:
                callback(self)
            else:
                self._callbacks = [*(self._callbacks or ()), callback]

        if in_loop_thread(self._loop):
            register()
        else:
            self._loop.call_soon_threadsafe(register)

    def done(self) -> bool:
        return self._ok is not None

    def _outcome(self) -> Any:
        if self._loaded is _UNSET:
            value = self._value
            self._loaded = loads(value) if type(value) is Pickled else value
        if self._ok:
            return self._loaded
        raise self._loaded

    def result(self, timeout: Any = None) -> Any:
        """Block until the call returns; its value, or the exception it raised."""
        if self._ok is None:
            if in_loop_thread(self._loop):
                raise RuntimeError("ActorFuture.result() would block the event loop; use `await` instead")
            t = parse_timeout(timeout)
            if not self._lock.acquire(timeout=-1 if t is None else t):
                raise TimeoutError(f"timed out after {timeout} s.")
            self._lock.release()
        return self._outcome()

    async def _wait(self) -> Any:
        if self._ok is None:
            loop = asyncio.get_running_loop()
            if loop is self._loop:
                if self._waiter is None:
                    self._waiter = loop.create_future()
                await asyncio.shield(self._waiter)
            else:  # awaited from another loop than the client's
                await loop.run_in_executor(None, self.result)
        return self._outcome()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()


_methods: dict[tuple[type, str], bool] = {}


def _is_method(cls: type, name: str) -> bool:
    """Whether `name` is a method of the actor class (called remotely) rather than an
    attribute (read remotely). Names only set on instances are attributes."""
    try:
        return _methods[cls, name]
    except KeyError:
        pass
    try:
        attr = inspect.getattr_static(cls, name)
    except AttributeError:
        if name.startswith("_"):
            raise AttributeError(f"{cls.__name__!r} actor has no attribute {name!r}") from None
        attr = None  # set on instances only
    is_method = callable(attr) or isinstance(attr, (staticmethod, classmethod))
    if len(_methods) > 10_000:
        _methods.clear()
    _methods[cls, name] = is_method
    return is_method


def _rebuild(cls: type, address: str, key: Any) -> Actor:
    return Actor(cls, address, key)


class Actor(TaskRef):
    """A proxy of an actor living on the worker at `address`.

    ``proxy.method(*args, **kwargs)`` returns an `ActorFuture`; ``proxy.attribute``
    returns the attribute's current value (an awaitable in asynchronous code). Passing
    the proxy to `submit` makes the task depend on the actor and get a working proxy.
    """

    __slots__ = ("_address", "_client", "_cls", "_future", "_worker")

    def __init__(self, cls: type, address: str, key: Any, worker: Any = None):
        self.key = key
        self._cls = cls
        self._address = address
        self._client: Any = None
        self._future: Any = None
        self._worker = worker

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self.key}>"

    __str__ = __repr__

    def __reduce__(self):  # type: ignore[override]
        return _rebuild, (self._cls, self._address, self.key)

    def __dask_tokenize__(self) -> Any:
        return ("Actor", self.key)

    def __dir__(self) -> list[str]:
        names = set(dir(type(self)))
        names.update(a for a in dir(self._cls) if not a.startswith("_"))
        return sorted(names)

    @property
    def client(self) -> Any:
        return self._bind()

    def adopt(self, client: Any, future_type: Any) -> None:
        """Hold a reference on the actor's key through `client` (as a Future does: a
        `future_type(key, client)` of the client's own)."""
        if self._future is None and self.key in client.futures:
            self._future = future_type(self.key, client)
            self._client = client

    def _bind(self) -> Any:
        client = self._client
        if client is None or client.status in ("closing", "closed"):
            client = self._client = provider("get_client")()  # shoal.worker_client
        return client

    def _local_instance(self) -> Any:
        """The actor object itself when the caller is an actor method running on the
        worker that holds it (calling through the network would wait on this thread)."""
        if not getattr(task_state, "actor", False):
            return _UNSET
        worker = task_state.worker
        if worker.address != self._address:
            return _UNSET
        return worker.state.actors.get(self.key, _UNSET)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        future = self._future
        if future is not None and future.status not in ("finished", "pending"):
            raise RuntimeError(f"Worker holding Actor was lost.  Status: {future.status}")
        local = self._local_instance()
        if local is not _UNSET:
            attr = getattr(local, name)
            if inspect.iscoroutinefunction(attr) or not callable(attr):
                return attr
            return lambda *args, **kwargs: EagerActorFuture(attr(*args, **kwargs))
        if _is_method(self._cls, name):
            key, address = self.key, self._address

            def call(*args: Any, **kwargs: Any) -> ActorFuture:
                payload = dumps((args, kwargs)) if args or kwargs else None
                return _channels(self._bind()).call(address, key, name, payload, False)

            call.__name__ = name
            return call
        client = self._bind()
        fut = _channels(client).call(self._address, self.key, name, None, True)
        if client.asynchronous:
            return fut
        return fut.result()


# ---------------------------------------------------------------------------- client side


def _channels(client: Any) -> _Channels:
    """The client's actor connections: one `_Channels` in its `extensions` (closed with it)."""
    ch = client.extensions.get("actors")
    if ch is None:
        with _channels_lock:
            ch = client.extensions.get("actors")
            if ch is None:
                ch = client.extensions["actors"] = _Channels(client)
    return ch


_channels_lock = threading.Lock()


class _Channels:
    """One client's connections to the workers holding actors, and its calls in flight.

    Calls from any thread go through one ordered outbox flushed on the client's loop, so
    calls to one actor from one thread arrive in the order they were made."""

    def __init__(self, client: Any):
        self.client = client
        loop = client.loop  # a `LoopWrapper`
        self.loop: asyncio.AbstractEventLoop = loop.asyncio_loop if loop is not None else None
        #: the connections' tasks (cancelled and awaited by `close`)
        self.tasks = BackgroundTasks("the actor channels")
        self.peers: dict[str, Any] = {}
        self.waiting: dict[str, list[m.ActorCall]] = {}  # address -> calls held while connecting
        self.pending: dict[int, tuple[str, ActorFuture]] = {}
        self.outbox: deque = deque()
        self.flush_pending = False
        self.ids = itertools.count(1)
        self.closed = False

    def call(self, address: str, key: Any, name: str, args: Pickled | None, attribute: bool) -> ActorFuture:
        fut = ActorFuture(self.loop)
        self.outbox.append((address, m.ActorCall(next(self.ids), key, name, args, attribute), fut))
        if not self.flush_pending:
            self.flush_pending = True
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                self.loop.call_soon(self._flush)
            else:
                self.loop.call_soon_threadsafe(self._flush)
        return fut

    def _flush(self) -> None:
        self.flush_pending = False
        outbox = self.outbox
        while outbox:
            address, msg, fut = outbox.popleft()
            if self.closed:
                fut._set(False, _closed_error())
                continue
            self.pending[msg.id] = (address, fut)
            peer = self.peers.get(address)
            if peer is not None and not peer.closed:
                peer.send(msg)
                continue
            held = self.waiting.get(address)
            if held is None:
                self.waiting[address] = [msg]
                self.tasks.spawn(self._connect(address))
            else:
                held.append(msg)

    async def _connect(self, address: str) -> None:
        from shoal.rpc import Peer

        try:
            comm = await self.client.connect_to(address)
        except Exception as e:  # noqa: BLE001 - any failure to connect fails the calls waiting on it
            calls = self.waiting.pop(address, [])
            for msg in calls:
                self._fail(msg.id, OSError(f"Unable to contact Actor's worker {address}: {e}"))
            return
        peer = Peer(comm, None, self._on_messages)
        self.peers[address] = peer
        for msg in self.waiting.pop(address, []):
            peer.send(msg)
        await peer.run()
        # the connection ended: fail what it still owed
        if self.peers.get(address) is peer:
            del self.peers[address]
        for cid, (addr, _) in list(self.pending.items()):
            if addr == address:
                self._fail(cid, OSError(f"Unable to contact Actor's worker {address}: the connection was lost"))
        await peer.close()

    def _fail(self, cid: int, exc: BaseException) -> None:
        entry = self.pending.pop(cid, None)
        if entry is not None:
            entry[1]._set(False, exc)

    def _on_messages(self, peer: Any, msgs: list) -> None:
        pending = self.pending
        for msg in msgs:
            if type(msg) is m.ActorResult:
                entry = pending.pop(msg.id, None)
                if entry is not None:
                    entry[1]._set(msg.ok, msg.value)

    async def close(self) -> None:
        self.closed = True
        self._flush()
        peers, self.peers = list(self.peers.values()), {}
        for peer in peers:
            await peer.close()
        for cid in list(self.pending):
            self._fail(cid, _closed_error())
        await self.tasks.close()


def _closed_error() -> BaseException:
    from shoal.exceptions import ClosedClientError

    return ClosedClientError("the client was closed")


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'ProxyRPC': "an internal of distributed's actors; call the actor's methods through the Actor proxy",
    },
)
