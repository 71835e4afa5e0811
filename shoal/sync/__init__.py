"""Cluster-wide coordination primitives: `Variable`, `Event`, `Semaphore`, `Lock`,
`Queue`, `MultiLock`.

All state lives on the scheduler (`shoal.sync.server`); these objects are thin proxies
holding only a name. They work from the client process and inside tasks (a missing
client binds lazily to `get_client()`), in blocking mode (methods return values) and in
asynchronous mode (methods return awaitables). Pickling keeps only the name (and
`max_leases`), so a primitive can be passed to tasks.

Semaphore leases and multi-locks belong to the client connection that acquired them: when
that client disconnects (for instance because the worker process running the task died),
the scheduler frees them.
"""

from __future__ import annotations

import inspect
import uuid
from collections import deque
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.rpc.core import NOTIFY_ID
from shoal.sync.state import normalize_name
from shoal.utils import parse_timeout

__all__ = ["Event", "Lock", "MultiLock", "Queue", "Semaphore", "Variable"]


class _Primitive:
    _kind = "primitive"

    def __init__(self, name: Any = None, client: Any = None):
        self.name = name if name is not None else f"{self._kind}-{uuid.uuid4().hex}"
        self._client = client

    @property
    def client(self) -> Any:
        """The client this object talks through: the one it was given, else the task's
        or the current client once there is one (looked up on each touch until found);
        None while there is none (an object unpickled outside any client or task)."""
        if self._client is None:
            from shoal.worker_client import get_client

            try:
                self._client = get_client()
            except ValueError:
                return None
        return self._client

    def _bound_client(self) -> Any:
        client = self.client
        if client is None:
            raise RuntimeError(
                f"{type(self).__name__} object not properly initialized. This can happen if the "
                "object is being deserialized outside of the context of a Client or Worker."
            )
        return client

    def _call(self, coro_fn: Any, *args: Any) -> Any:
        return self._bound_client().sync(coro_fn, *args)

    async def _request(self, op: str, **kwargs: Any) -> Any:
        client = self._bound_client()
        if client.scheduler_comm is None:
            raise RuntimeError(f"{client} is not connected to a scheduler")
        client.outbox.flush()  # what this client sent before (a release, a submit) goes first
        return await client.scheduler_comm.request(f"sync_{op}", name=self.name, **kwargs)

    def __await__(self):
        async def _self() -> Any:
            return self

        return _self().__await__()

    def __reduce__(self):
        return type(self), (self.name,)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


async def _ready(value: Any) -> Any:
    """`value`, as an awaitable (what asynchronous-mode methods return)."""
    return value


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


# ---------------------------------------------------------------------- Variable


class Variable(_Primitive):
    """A named mutable slot on the scheduler, shared by all clients and tasks.

    The value is any picklable object, or a `Future`: then only its key is stored and the
    scheduler keeps the result alive while it is stored (even after every client dropped
    its own future); `get` returns a new `Future` bound to the caller's client.
    """

    _kind = "variable"

    def set(self, value: Any, timeout: Any = "30 s", **kwargs: Any) -> Any:
        return self._call(self._set, value)

    async def _set(self, value: Any) -> None:
        from shoal.client.futures import Future

        if isinstance(value, Future):
            client = self._bound_client()
            client.outbox.flush()  # the future's submit must reach the scheduler first
            await self._request("variable_set", key=value.key)
        else:
            client = self._bound_client()
            await self._request("variable_set", value=client.families.check_send(dumps(value), "a Variable's value"))

    def get(self, timeout: Any = None, **kwargs: Any) -> Any:
        return self._call(self._get, parse_timeout(timeout))

    async def _get(self, timeout: float | None) -> Any:
        from shoal.client.futures import Future

        reply = await self._request("variable_get", timeout=timeout)
        if reply["kind"] == "future":
            client = self._bound_client()
            key = normalize_name(reply["key"])
            future = Future(key, client)
            # the scheduler made this client want the key before replying; ask again so
            # the status (already computed / erred) comes back now that the future exists
            client.outbox.send(m.DesireKeys((key,), client.id))
            return future
        return self._bound_client().families.load(reply["value"])

    def delete(self) -> Any:
        return self._call(self._request, "variable_delete")


# ---------------------------------------------------------------------- Event


class Event(_Primitive):
    """A cluster-wide flag: `set` releases all current and future `wait`ers until `clear`."""

    _kind = "event"

    def set(self) -> Any:
        return self._call(self._request, "event_set")

    def clear(self) -> Any:
        return self._call(self._request, "event_clear")

    def is_set(self) -> Any:
        return self._call(self._request, "event_is_set")

    def wait(self, timeout: Any = None) -> Any:
        """True once the flag is set; False if `timeout` passes first (no exception)."""
        return self._call(self._wait, parse_timeout(timeout))

    async def _wait(self, timeout: float | None) -> bool:
        return bool(await self._request("event_wait", timeout=timeout))


# ---------------------------------------------------------------------- Semaphore / Lock


class Semaphore(_Primitive):
    """At most `max_leases` holders cluster-wide. Leases are per instance (released
    oldest first) and belong to the client connection that acquired them."""

    _kind = "semaphore"

    def __init__(
        self,
        max_leases: int = 1,
        name: Any = None,
        scheduler_rpc: Any = None,
        loop: Any = None,
        client: Any = None,
    ):
        if not isinstance(max_leases, int) or isinstance(max_leases, bool) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, got {max_leases!r}")
        super().__init__(name, client)
        self.max_leases = max_leases
        self.id = uuid.uuid4().hex
        self._leases: deque[str] = deque()

    def acquire(self, timeout: Any = None) -> Any:
        """Take a lease; True, or False if `timeout` passed first (0: try once)."""
        return self._call(self._acquire, parse_timeout(timeout))

    async def _acquire(self, timeout: float | None) -> bool:
        if getattr(self, "_closed", False):
            raise RuntimeError(f"{self!r} is closed")
        lease_id = f"{self.id}-{uuid.uuid4().hex}"
        ok = await self._request("semaphore_acquire", max_leases=self.max_leases, lease_id=lease_id, timeout=timeout)
        if ok:
            self._leases.append(lease_id)
        return bool(ok)

    def release(self) -> Any:
        """Free this instance's oldest lease (``RuntimeError`` if it holds none).

        One way and without a hop to the event loop: the request joins the client's
        ordered outbox, so a later acquire from this client cannot overtake it, and the
        lease cannot be unknown to the scheduler while the connection lives."""
        if not self._leases:
            raise self._not_held()
        client = self._bound_client()
        lease_id = self._leases.popleft()
        client.outbox.send(m.Request(NOTIFY_ID, "sync_semaphore_release", {"name": self.name, "lease_id": lease_id}))
        return _ready(True) if client.asynchronous else True

    def _not_held(self) -> Exception:
        return RuntimeError(f"Released too often: {self!r} holds no lease")

    def close(self) -> Any:
        """Release every lease this instance holds; it cannot be used afterwards
        (distributed's `close`; other instances of the same name are unaffected)."""
        client = self.client
        while self._leases:
            lease_id = self._leases.popleft()
            client.outbox.send(m.Request(NOTIFY_ID, "sync_semaphore_release", {"name": self.name, "lease_id": lease_id}))
        self._closed = True
        return _ready(None) if client.asynchronous else None

    def get_value(self) -> Any:
        """Number of leases currently held cluster-wide."""
        return self._call(self._request, "semaphore_value")

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Semaphore:
        await _maybe_await(self.acquire())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _maybe_await(self.release())

    def __reduce__(self):
        return Semaphore, (self.max_leases, self.name)

    def __repr__(self) -> str:
        return f"<Semaphore: {self.name} max_leases={self.max_leases}>"


class Lock(Semaphore):
    """A cluster-wide mutex (a `Semaphore` with one lease)."""

    def __init__(self, name: Any = None, scheduler_rpc: Any = None, loop: Any = None, client: Any = None):
        super().__init__(max_leases=1, name=name, client=client)

    def acquire(self, blocking: bool = True, timeout: Any = None) -> Any:  # type: ignore[override]
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout=timeout)

    def _not_held(self) -> Exception:
        return RuntimeError(f"Lock {self.name!r} is not held by this Lock object: cannot release it")

    def locked(self) -> Any:
        """Whether the lock is taken (by anyone)."""
        return self._call(self._request, "semaphore_locked")

    def __reduce__(self):
        return Lock, (self.name,)

    def __repr__(self) -> str:
        return f"<Lock: {self.name}>"


# ---------------------------------------------------------------------- Queue


def _unpack_item(client: Any, reply: dict) -> Any:
    """A queue item as the scheduler sent it: data is unpickled here, a future's key
    becomes a `Future` bound to `client` (which the scheduler already made want it)."""
    from shoal.client.futures import Future

    if reply["kind"] == "future":
        key = normalize_name(reply["key"])
        future = Future(key, client)
        # ask again now that the future exists, so its status (finished / erred) comes back
        client.outbox.send(m.DesireKeys((key,), client.id))
        return future
    return client.families.load(reply["value"])


class Queue(_Primitive):
    """A cluster-wide FIFO queue held by the scheduler (``maxsize=0``: unbounded).

    Items are any picklable objects (pickled here, opaque to the scheduler) or `Future`s:
    then only the key travels, and the scheduler keeps the result alive while it is queued
    (even after the producer dropped its future); `get` returns a new `Future` bound to the
    getting client. The first use of a name on the scheduler decides its `maxsize`.
    """

    _kind = "queue"

    def __init__(self, name: Any = None, client: Any = None, maxsize: int = 0):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be a non-negative integer, got {maxsize!r}")
        super().__init__(name, client)
        self.maxsize = maxsize

    def put(self, value: Any, timeout: Any = None, **kwargs: Any) -> Any:
        """Append `value`, waiting while the queue is full (`TimeoutError` after `timeout`).

        Data put into an unbounded queue (``maxsize=0``, which never makes `put` wait) is
        pipelined: the pickled item joins the client's ordered outbox and `put` returns
        without waiting for the scheduler's acknowledgement. Every later call of this
        client (a `get`, `qsize`, another primitive) is ordered after it; other clients
        see the item as soon as the scheduler reads it. Futures and bounded queues wait
        for the scheduler, as in distributed."""
        from shoal.client.futures import Future

        if self.maxsize == 0 and not isinstance(value, Future):
            client = self._bound_client()
            data = client.families.check_send(dumps(value), "a queue item")  # fails here, in the caller
            client.outbox.send(m.Request(NOTIFY_ID, "sync_queue_put", {"name": self.name, "maxsize": 0, "value": data}))
            return _ready(None) if client.asynchronous else None
        return self._call(self._put, value, parse_timeout(timeout))

    async def _put(self, value: Any, timeout: float | None) -> None:
        from shoal.client.futures import Future

        if isinstance(value, Future):
            client = self._bound_client()
            client.outbox.flush()  # the future's submit must reach the scheduler first
            if value.client is not None and value.client is not client:
                value.client.outbox.flush()
            await self._request("queue_put", maxsize=self.maxsize, key=value.key, timeout=timeout)
        else:
            data = self._bound_client().families.check_send(dumps(value), "a queue item")
            await self._request("queue_put", maxsize=self.maxsize, value=data, timeout=timeout)

    def get(self, timeout: Any = None, batch: bool | int = False, **kwargs: Any) -> Any:
        """The oldest item, waiting for one (`TimeoutError` after `timeout`).

        ``batch=True``: a list of everything queued now (possibly empty, never waits);
        ``batch=n``: a list of exactly `n` items, waiting until there are `n`."""
        if not isinstance(batch, bool) and (not isinstance(batch, int) or batch < 0):
            raise ValueError(f"batch must be a bool or a non-negative integer, got {batch!r}")
        return self._call(self._get, parse_timeout(timeout), batch)

    async def _get(self, timeout: float | None, batch: bool | int) -> Any:
        reply = await self._request("queue_get", maxsize=self.maxsize, timeout=timeout, batch=batch)
        client = self._bound_client()
        replies = [reply] if batch is False else reply
        items = [_unpack_item(client, r) for r in replies]
        keys = [normalize_name(r["key"]) for r in replies if r["kind"] == "future"]
        if keys:
            # our futures' desire-keys go out first (same connection, in order); then the
            # queue may let go of the keys
            client.outbox.flush()
            await self._request("queue_ack", keys=keys)
        return items[0] if batch is False else items

    def close(self) -> Any:
        """Forget the queue on the scheduler (its items, and the futures it kept alive),
        as distributed's `Queue.close`; one way, ordered after this client's earlier calls."""
        client = self.client
        if client.status == "running":
            client.outbox.send(m.Request(NOTIFY_ID, "sync_queue_release", {"name": self.name}))
        return _ready(None) if client.asynchronous else None

    def qsize(self, **kwargs: Any) -> Any:
        """Number of items queued now."""
        return self._call(self._request, "queue_qsize")

    def __reduce__(self):
        return Queue, (self.name, None, self.maxsize)

    def __repr__(self) -> str:
        return f"<Queue: {self.name} maxsize={self.maxsize}>"


# ---------------------------------------------------------------------- MultiLock


class MultiLock(_Primitive):
    """Several named locks taken together: `acquire` gets all of them atomically or none.

    The scheduler grants a request only when every one of its locks is free, in arrival
    order per lock, so MultiLocks over overlapping names (in any order) never deadlock.
    The locks belong to the client connection that acquired them and are freed if it goes
    away. The names form their own namespace (separate from `Lock`'s).
    """

    _kind = "multilock"

    def __init__(self, names: Any = None, client: Any = None):
        super().__init__(None, client)
        self.names = list(names) if names is not None else []
        self.id = uuid.uuid4().hex
        self._request_id: str | None = None

    def acquire(self, blocking: bool = True, timeout: Any = None, num_locks: int | None = None) -> Any:
        """Take all the locks (or any `num_locks` of them); True, or False if `timeout`
        passed first (then none is held). ``blocking=False`` tries once."""
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        if num_locks is not None and not 0 < int(num_locks) <= len(set(self.names)):
            raise ValueError(f"num_locks must be between 1 and the number of names, got {num_locks}")
        return self._call(self._acquire, parse_timeout(timeout), num_locks)

    async def _acquire(self, timeout: float | None, num_locks: int | None = None) -> bool:
        if self._request_id is not None:
            raise RuntimeError(f"{self!r} is already acquired: release it first")
        request_id = f"{self.id}-{uuid.uuid4().hex}"
        extra = {} if num_locks is None else {"num_locks": int(num_locks)}
        ok = await self._request(
            "multilock_acquire", names=self.names, request_id=request_id, timeout=timeout, **extra
        )
        if ok:
            self._request_id = request_id
        return bool(ok)

    def release(self) -> Any:
        """Free all the locks (`ValueError` if this instance does not hold them)."""
        return self._call(self._release)

    async def _release(self) -> None:
        if self._request_id is None:
            raise ValueError("Lock is not yet acquired")
        request_id, self._request_id = self._request_id, None
        await self._request("multilock_release", request_id=request_id)

    def locked(self) -> Any:
        """Whether this instance holds its locks (a local answer, as in distributed; unlike
        distributed it stays False after a failed `acquire`)."""
        return self._call(self._locked)

    async def _locked(self) -> bool:
        return self._request_id is not None

    def __enter__(self) -> MultiLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> MultiLock:
        await _maybe_await(self.acquire())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _maybe_await(self.release())

    def __reduce__(self):
        return MultiLock, (self.names,)

    def __repr__(self) -> str:
        return f"<MultiLock: {self.names}>"
