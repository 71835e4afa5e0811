"""Pure state of the cluster-wide coordination primitives (variables, events, semaphores,
queues, multi-locks).

No asyncio, no clock: each method changes the state and returns what changed, so the
scheduler's I/O shell (`shoal.sync.server`) knows whom to wake and which keys to keep
alive or release. Waiting with timeouts happens in the shell.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MultiLockRequest", "QueueState", "SemaphoreState", "SyncState", "VariableValue"]


@dataclass(slots=True, frozen=True)
class VariableValue:
    """What a Variable holds: opaque data (msgpack-able or a `Pickled`) or a future's key."""

    kind: str  # "data" | "future"
    value: Any


@dataclass(slots=True)
class SemaphoreState:
    max_leases: int
    leases: dict[str, str] = field(default_factory=dict)  # lease id -> holder client id

    @property
    def free(self) -> int:
        return self.max_leases - len(self.leases)


@dataclass(slots=True)
class QueueState:
    maxsize: int  # 0: unbounded
    items: deque[VariableValue] = field(default_factory=deque)
    keys: Counter = field(default_factory=Counter)  # future key -> occurrences in `items`

    @property
    def full(self) -> bool:
        return self.maxsize > 0 and len(self.items) >= self.maxsize


@dataclass(slots=True)
class MultiLockRequest:
    names: tuple[Any, ...]
    holder: str  # client id of the requesting connection
    granted: bool = False
    #: how many of `names` it needs (None: all of them)
    num_locks: int | None = None
    #: the names it holds once granted
    held: tuple[Any, ...] = ()


def normalize_name(name: Any) -> Any:
    """Names may be any hashable dask-key-like value; lists (what msgpack gives back for
    tuples) become tuples."""
    if isinstance(name, list):
        return tuple(normalize_name(n) for n in name)
    return name


class SyncState:
    def __init__(self) -> None:
        self.variables: dict[Any, VariableValue] = {}
        self.events: set[Any] = set()  # names of events whose flag is set
        self.semaphores: dict[Any, SemaphoreState] = {}
        self.queues: dict[Any, QueueState] = {}
        # multi-locks: every request (pending and granted) in arrival order, and which
        # request holds each lock name
        self.multilock_requests: dict[str, MultiLockRequest] = {}
        self.multilock_owners: dict[Any, str] = {}

    # ------------------------------------------------------------------ variables

    def variable_set(self, name: Any, kind: str, value: Any) -> VariableValue | None:
        """Store a value; return the value it replaced (None if unset)."""
        if kind not in ("data", "future"):
            raise ValueError(f"unknown variable value kind {kind!r}")
        old = self.variables.get(name)
        self.variables[name] = VariableValue(kind, value)
        return old

    def variable_get(self, name: Any) -> VariableValue | None:
        return self.variables.get(name)

    def variable_delete(self, name: Any) -> VariableValue | None:
        """Forget a variable; return its last value (None if it was unset)."""
        return self.variables.pop(name, None)

    # ------------------------------------------------------------------ events

    def event_set(self, name: Any) -> bool:
        """Set the flag; True if it changed (waiters must be woken)."""
        if name in self.events:
            return False
        self.events.add(name)
        return True

    def event_clear(self, name: Any) -> bool:
        """Clear the flag; True if it was set. A cleared event leaves no entry behind."""
        if name in self.events:
            self.events.discard(name)
            return True
        return False

    def event_is_set(self, name: Any) -> bool:
        return name in self.events

    # ------------------------------------------------------------------ semaphores

    def semaphore_register(self, name: Any, max_leases: int) -> SemaphoreState:
        if not isinstance(max_leases, int) or isinstance(max_leases, bool) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, got {max_leases!r}")
        sem = self.semaphores.get(name)
        if sem is None:
            sem = self.semaphores[name] = SemaphoreState(max_leases)
        elif sem.max_leases != max_leases:
            raise ValueError(f"Inconsistent max leases: {max_leases}, expected: {sem.max_leases}")
        return sem

    def semaphore_try_acquire(self, name: Any, max_leases: int, lease_id: str, holder: str) -> bool:
        """Grant `lease_id` to `holder` if a lease is free (idempotent for a lease already held)."""
        sem = self.semaphore_register(name, max_leases)
        if lease_id in sem.leases:
            return True
        if sem.free <= 0:
            return False
        sem.leases[lease_id] = holder
        return True

    def semaphore_release(self, name: Any, lease_id: str) -> None:
        """Free one lease; ValueError if it is not held."""
        sem = self.semaphores.get(name)
        if sem is None or lease_id not in sem.leases:
            raise ValueError(
                f"cannot release lease {lease_id!r} of semaphore/lock {name!r}: it is not held "
                "(released too often, or freed because its holder disconnected)"
            )
        del sem.leases[lease_id]

    def semaphore_value(self, name: Any) -> int:
        """Leases currently held cluster-wide."""
        sem = self.semaphores.get(name)
        return 0 if sem is None else len(sem.leases)

    def semaphore_locked(self, name: Any) -> bool:
        sem = self.semaphores.get(name)
        return sem is not None and sem.free <= 0

    def remove_holder(self, holder: str) -> list[Any]:
        """Free every lease of `holder` (a client that went away); return the semaphore
        names that got free leases."""
        freed = []
        for name, sem in self.semaphores.items():
            mine = [lid for lid, h in sem.leases.items() if h == holder]
            for lid in mine:
                del sem.leases[lid]
            if mine:
                freed.append(name)
        return freed

    # ------------------------------------------------------------------ queues

    def queue_register(self, name: Any, maxsize: int) -> QueueState:
        """The queue called `name`, created with `maxsize` if new (the first registration
        decides the capacity, as in distributed)."""
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be a non-negative integer, got {maxsize!r}")
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueState(maxsize)
        return q

    def queue_put(self, name: Any, maxsize: int, kind: str, value: Any) -> bool:
        """Append an item; False (nothing changed) if the queue is full."""
        if kind not in ("data", "future"):
            raise ValueError(f"unknown queue item kind {kind!r}")
        q = self.queue_register(name, maxsize)
        if q.full:
            return False
        q.items.append(VariableValue(kind, value))
        if kind == "future":
            q.keys[value] += 1
        return True

    def queue_get(self, name: Any, maxsize: int, n: int | None) -> tuple[list[VariableValue], list[Any]] | None:
        """Take `n` items (None: everything queued now, possibly nothing) oldest first.

        Returns ``(items, released)`` where `released` are the future keys the queue no
        longer holds, or None (nothing taken) if fewer than `n` items are queued."""
        q = self.queue_register(name, maxsize)
        if n is None:
            n = len(q.items)
        if n < 0:
            raise ValueError(f"cannot take {n} items")
        if len(q.items) < n:
            return None
        items = [q.items.popleft() for _ in range(n)]
        released = []
        for item in items:
            if item.kind == "future":
                q.keys[item.value] -= 1
                if q.keys[item.value] <= 0:
                    del q.keys[item.value]
                    released.append(item.value)
        return items, released

    def queue_size(self, name: Any) -> int:
        q = self.queues.get(name)
        return 0 if q is None else len(q.items)

    # ------------------------------------------------------------------ multi-locks

    def multilock_acquire(self, request_id: str, names: Any, holder: str, num_locks: int | None = None) -> list[str]:
        """Queue a request for all of `names`, or any `num_locks` of them (idempotent for
        a known request id), and grant whatever can be granted; return the ids of the
        newly granted requests."""
        if request_id not in self.multilock_requests:
            unique = tuple(dict.fromkeys(normalize_name(n) for n in names))
            if num_locks is not None and not 0 < num_locks <= len(unique):
                raise ValueError(f"num_locks must be between 1 and {len(unique)}, got {num_locks}")
            self.multilock_requests[request_id] = MultiLockRequest(unique, holder, num_locks=num_locks)
        return self._multilock_grant()

    def multilock_granted(self, request_id: str) -> bool | None:
        """True if granted, False if waiting, None if unknown (withdrawn or never made)."""
        req = self.multilock_requests.get(request_id)
        return None if req is None else req.granted

    def multilock_withdraw(self, request_id: str) -> list[str]:
        """Give up a pending request (timeout); return the newly granted requests."""
        req = self.multilock_requests.get(request_id)
        if req is None or req.granted:
            return []
        del self.multilock_requests[request_id]
        return self._multilock_grant()

    def multilock_release(self, request_id: str) -> list[str]:
        """Free all the locks of a granted request; return the newly granted requests."""
        req = self.multilock_requests.get(request_id)
        if req is None or not req.granted:
            raise ValueError(f"Lock is not yet acquired (request {request_id!r} holds no locks)")
        del self.multilock_requests[request_id]
        for name in req.held:
            if self.multilock_owners.get(name) == request_id:
                del self.multilock_owners[name]
        return self._multilock_grant()

    def multilock_remove_holder(self, holder: str) -> tuple[list[str], list[str]]:
        """Drop every request of `holder` (a client that went away), freeing its locks.
        Returns ``(removed, granted)``: the dropped request ids (their waiters must give
        up) and the requests granted as a consequence."""
        removed = [rid for rid, req in self.multilock_requests.items() if req.holder == holder]
        for rid in removed:
            req = self.multilock_requests.pop(rid)
            if req.granted:
                for name in req.held:
                    if self.multilock_owners.get(name) == rid:
                        del self.multilock_owners[name]
        return removed, (self._multilock_grant() if removed else [])

    def multilock_locked(self, names: Any) -> bool:
        """Whether any of `names` is held (by anyone)."""
        return any(normalize_name(n) in self.multilock_owners for n in names)

    def _multilock_grant(self) -> list[str]:
        """Grant pending requests in arrival order. A request is granted only when every
        one of its locks is free and no older pending request wants any of them: all or
        nothing (no partial holds, hence no deadlock however requests overlap) and FIFO
        per lock (no starvation of a request for many locks). A request for `num_locks`
        of its names is granted the first that many that are free."""
        granted = []
        wanted: set[Any] = set()  # locks claimed by older requests still waiting
        for rid, req in self.multilock_requests.items():
            if req.granted:
                continue
            free = [n for n in req.names if n not in self.multilock_owners and n not in wanted]
            if len(free) >= (len(req.names) if req.num_locks is None else req.num_locks):
                req.granted = True
                req.held = tuple(free[: req.num_locks] if req.num_locks is not None else free)
                for n in req.held:
                    self.multilock_owners[n] = rid
                granted.append(rid)
            else:
                wanted.update(req.names)
        return granted
