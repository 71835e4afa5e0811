"""Pure state of the cluster-wide coordination primitives (variables, events, semaphores).

No asyncio, no clock: each method changes the state and returns what changed, so the
scheduler's I/O shell (`shoal.sync.server`) knows whom to wake and which keys to keep
alive or release. Waiting with timeouts happens in the shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SemaphoreState", "SyncState", "VariableValue"]


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
