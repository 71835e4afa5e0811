"""The scheduler side of the coordination primitives: request handlers around `SyncState`.

`SyncServer` is a scheduler extension (`shoal.scheduler.extension`): it adds the
`sync_*` request handlers, and its `remove_client` hook frees the semaphore leases and
multi-locks of a client that disconnects. Decisions live in the pure `SyncState`; this
shell only waits (per-name wake-ups with deadlines) and keeps futures stored in variables
and queues alive through the scheduler's named holds ``variable-<name>`` and
``queue-<name>`` (`HoldKeys` / `ReleaseHold`; no pretend clients).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from shoal.scheduler.events import HoldKeys, ReleaseHold, WantKeys
from shoal.scheduler.extension import SchedulerExtension
from shoal.sync.state import SyncState, normalize_name

__all__ = ["OPS", "SyncServer"]

#: the primitives' operations; each is a request handler named ``sync_<op>``
OPS = (
    "variable_set", "variable_get", "variable_delete",
    "event_set", "event_clear", "event_is_set", "event_wait",
    "semaphore_acquire", "semaphore_release", "semaphore_value", "semaphore_locked",
    "queue_put", "queue_get", "queue_ack", "queue_qsize",
    "multilock_acquire", "multilock_release", "multilock_locked",
)  # fmt: skip


class _Waiters:
    """Per-name wake-ups: `wait(name, timeout)` returns when `notify(name)` is called or
    the timeout passes (whichever comes first); callers re-check their condition."""

    def __init__(self) -> None:
        self._waiting: dict[Any, set[asyncio.Future]] = {}

    async def wait(self, name: Any, timeout: float | None) -> None:
        fut = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(name, set())
        waiting.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiting.discard(fut)
            if not waiting and self._waiting.get(name) is waiting:
                del self._waiting[name]

    def notify(self, name: Any) -> None:
        for fut in self._waiting.get(name, ()):
            if not fut.done():
                fut.set_result(None)

    def __len__(self) -> int:
        return sum(len(s) for s in self._waiting.values())


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(float(timeout), 0.0)


class SyncServer(SchedulerExtension):
    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        self.state = SyncState()
        self.waiters = _Waiters()

    def handlers(self) -> dict[str, Any]:
        return {f"sync_{op}": getattr(self, op) for op in OPS}

    # ------------------------------------------------------------------ plumbing

    def _hold(self, holder: str, key: Any) -> None:
        sched = self.scheduler
        sched.stimulate(HoldKeys(sched.new_stimulus_id("sync"), holder, (key,)))

    def _unhold(self, holder: str, key: Any) -> None:
        sched = self.scheduler
        sched.stimulate(ReleaseHold(sched.new_stimulus_id("sync"), holder, (key,)))

    def _want(self, client_id: str, key: Any) -> None:
        """The getting client wants `key` before the reply carrying its future leaves."""
        sched = self.scheduler
        sched.stimulate(WantKeys(sched.new_stimulus_id("sync"), client_id, (key,)))

    @staticmethod
    def _holder(peer: Any) -> str:
        if peer.role == "client":
            return peer.ident
        return f"peer-{id(peer)}"

    def _alive(self, peer: Any) -> bool:
        if peer.closed:
            return False
        if peer.role == "client":
            return self.scheduler.clients.get(peer.ident) is peer
        return True

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        for name in self.state.remove_holder(client_id):
            self.waiters.notify(("semaphore", name))
        removed, granted = self.state.multilock_remove_holder(client_id)
        self._notify_multilocks(removed + granted)

    def _notify_multilocks(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self.waiters.notify(("multilock", rid))

    def _known_key(self, key: Any) -> Any:
        key = normalize_name(key)
        if self.scheduler.state.tasks.get(key) is None:
            raise TimeoutError(f"Task {key!r} unknown to scheduler.")
        return key

    def _now_or_later(
        self,
        wake: Any,
        timeout: float | None,
        attempt: Callable[[], tuple[bool, Any]],
        expired: Callable[[], Any],
    ) -> Any:
        """The answer of `attempt()` if it is ready now (no task, no timer: the common
        uncontended case); otherwise a coroutine retrying it at every wake-up of `wake`
        until it is ready or the deadline passes, then answering `expired()` (which returns
        a value or raises `TimeoutError`)."""
        ready, value = attempt()
        if ready:
            return value
        deadline = _deadline(timeout)
        if deadline is not None and deadline <= time.monotonic():
            return expired()
        return self._retry(wake, deadline, attempt, expired)

    async def _retry(
        self, wake: Any, deadline: float | None, attempt: Callable[[], tuple[bool, Any]], expired: Callable[[], Any]
    ) -> Any:
        while True:
            # attempt before every wait, the first time included: between the caller's
            # attempt and this task's first step, the wake-up may already have happened
            ready, value = attempt()
            if ready:
                return value
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                return expired()
            await self.waiters.wait(wake, remaining)

    # ------------------------------------------------------------------ variables

    def variable_set(self, peer: Any, name: Any, value: Any = None, key: Any = None) -> None:
        name = normalize_name(name)
        pseudo = f"variable-{name}"
        if key is not None:
            key = self._known_key(key)
            self._hold(pseudo, key)
            old = self.state.variable_set(name, "future", key)
        else:
            old = self.state.variable_set(name, "data", value)
        if old is not None and old.kind == "future" and old.value != key:
            self._unhold(pseudo, old.value)
        self.waiters.notify(("variable", name))

    def variable_get(self, peer: Any, name: Any, timeout: float | None = None) -> Any:
        name = normalize_name(name)

        def attempt() -> tuple[bool, Any]:
            v = self.state.variable_get(name)
            if v is None:
                return False, None
            if v.kind == "future":
                # the getter wants the key before the reply leaves: a concurrent `set`
                # cannot release it between this reply and the getter's own `desire-keys`
                if peer.role == "client" and self._alive(peer):
                    self._want(peer.ident, v.value)
                return True, {"kind": "future", "key": v.value}
            return True, {"kind": "data", "value": v.value}

        def expired() -> Any:
            raise TimeoutError(f"Variable {name!r} was not set within {timeout} s")

        return self._now_or_later(("variable", name), timeout, attempt, expired)

    def variable_delete(self, peer: Any, name: Any) -> None:
        name = normalize_name(name)
        old = self.state.variable_delete(name)
        if old is not None and old.kind == "future":
            sched = self.scheduler
            sched.stimulate(ReleaseHold(sched.new_stimulus_id("sync"), f"variable-{name}"))

    # ------------------------------------------------------------------ events

    def event_set(self, peer: Any, name: Any) -> None:
        name = normalize_name(name)
        if self.state.event_set(name):
            self.waiters.notify(("event", name))

    def event_clear(self, peer: Any, name: Any) -> None:
        self.state.event_clear(normalize_name(name))

    def event_is_set(self, peer: Any, name: Any) -> bool:
        return self.state.event_is_set(normalize_name(name))

    def event_wait(self, peer: Any, name: Any, timeout: float | None = None) -> Any:
        name = normalize_name(name)
        return self._now_or_later(
            ("event", name),
            timeout,
            lambda: (self.state.event_is_set(name), True),
            lambda: False,
        )

    # ------------------------------------------------------------------ semaphores

    def semaphore_acquire(
        self,
        peer: Any,
        name: Any,
        max_leases: int,
        lease_id: str,
        timeout: float | None = None,
    ) -> Any:
        name = normalize_name(name)
        self.state.semaphore_register(name, max_leases)  # ValueError on inconsistent max_leases
        holder = self._holder(peer)

        def attempt() -> tuple[bool, Any]:
            if not self._alive(peer):
                return True, False  # the holder is gone: never grant it a lease
            if self.state.semaphore_try_acquire(name, max_leases, lease_id, holder):
                return True, True
            return False, False

        return self._now_or_later(("semaphore", name), timeout, attempt, lambda: False)

    def semaphore_release(self, peer: Any, name: Any, lease_id: str) -> None:
        name = normalize_name(name)
        self.state.semaphore_release(name, lease_id)
        self.waiters.notify(("semaphore", name))

    def semaphore_value(self, peer: Any, name: Any) -> int:
        return self.state.semaphore_value(normalize_name(name))

    def semaphore_locked(self, peer: Any, name: Any) -> bool:
        return self.state.semaphore_locked(normalize_name(name))

    # ------------------------------------------------------------------ queues

    def queue_put(
        self,
        peer: Any,
        name: Any,
        maxsize: int = 0,
        value: Any = None,
        key: Any = None,
        timeout: float | None = None,
    ) -> Any:
        name = normalize_name(name)
        self.state.queue_register(name, maxsize)  # ValueError on a bad maxsize
        if key is not None:
            key = self._known_key(key)

        def attempt() -> tuple[bool, Any]:
            if key is not None:
                self._known_key(key)  # still known after waiting for room?
            if not self.state.queue_put(
                name,
                maxsize,
                "future" if key is not None else "data",
                key if key is not None else value,
            ):
                return False, None
            if key is not None:
                # synchronous with the put: no stimulus in between can forget the key
                self._hold(f"queue-{name}", key)
            self.waiters.notify(("queue-get", name))
            return True, None

        def expired() -> Any:
            raise TimeoutError(f"Queue {name!r} stayed full for {timeout} s")

        return self._now_or_later(("queue-put", name), timeout, attempt, expired)

    def queue_get(
        self,
        peer: Any,
        name: Any,
        maxsize: int = 0,
        timeout: float | None = None,
        batch: Any = False,
    ) -> Any:
        name = normalize_name(name)
        if batch is True:
            n = None  # everything queued now, without waiting
        elif batch is False:
            n = 1
        else:
            if not isinstance(batch, int) or batch < 0:
                raise ValueError(f"batch must be a bool or a non-negative integer, got {batch!r}")
            n = batch

        def attempt() -> tuple[bool, Any]:
            if not self._alive(peer):
                # nobody would receive the items: leave them queued
                raise RuntimeError(f"Queue {name!r}: the getting connection went away")
            taken = self.state.queue_get(name, maxsize, n)
            if taken is None:
                return False, None
            items, _released = taken
            getter = peer.ident if peer.role == "client" else None
            replies = []
            for item in items:
                if item.kind == "future":
                    # the getter wants the key before the queue lets go of it (and before
                    # the reply leaves), so the result is never forgotten in between
                    if getter is not None:
                        self._want(getter, item.value)
                    replies.append({"kind": "future", "key": item.value})
                else:
                    replies.append({"kind": "data", "value": item.value})
            # the queue keeps holding the released keys until the getter confirms
            # (`queue_ack`) that its own futures exist: a `ReleaseKeys` the getting client
            # sent for an older future of the same key may still be on its way, and would
            # otherwise drop the last reference before the new future's `desire-keys` arrives
            if items:
                self.waiters.notify(("queue-put", name))
            return True, (replies if batch is not False else replies[0])

        def expired() -> Any:
            raise TimeoutError(f"Queue {name!r}: no {'items' if n != 1 else 'item'} to get within {timeout} s")

        return self._now_or_later(("queue-get", name), timeout, attempt, expired)

    def queue_ack(self, peer: Any, name: Any, keys: Any = ()) -> None:
        """The getter's futures for `keys` exist (its `desire-keys` came before this request
        on the same connection): stop holding the keys the queue no longer contains."""
        name = normalize_name(name)
        q = self.state.queues.get(name)
        for key in keys:
            key = normalize_name(key)
            if q is None or key not in q.keys:
                self._unhold(f"queue-{name}", key)

    def queue_qsize(self, peer: Any, name: Any) -> int:
        return self.state.queue_size(normalize_name(name))

    # ------------------------------------------------------------------ multi-locks

    def multilock_acquire(
        self,
        peer: Any,
        name: Any,
        names: Any,
        request_id: str,
        timeout: float | None = None,
        num_locks: int | None = None,
    ) -> Any:
        if not self._alive(peer):
            return False  # the holder is gone: never grant it locks
        self._notify_multilocks(self.state.multilock_acquire(request_id, names, self._holder(peer), num_locks))

        def attempt() -> tuple[bool, Any]:
            granted = self.state.multilock_granted(request_id)
            if granted is None:
                return True, False  # withdrawn because the holder went away
            if granted:
                return True, True
            if not self._alive(peer):
                return True, self._withdraw(request_id)
            return False, False

        return self._now_or_later(
            ("multilock", request_id),
            timeout,
            attempt,
            lambda: self._withdraw(request_id),
        )

    def _withdraw(self, request_id: str) -> bool:
        """Give up a pending request, so it blocks nobody (FIFO), waking whoever that
        unblocks; False (not acquired)."""
        self._notify_multilocks(self.state.multilock_withdraw(request_id))
        return False

    def multilock_release(self, peer: Any, name: Any, request_id: str) -> None:
        self._notify_multilocks(self.state.multilock_release(request_id))

    def multilock_locked(self, peer: Any, name: Any, names: Any) -> bool:
        return self.state.multilock_locked(names)

