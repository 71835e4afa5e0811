"""Read-only observers of the scheduler's transitions: progress counts, task metadata.

PURE. `SchedulerState.observers` holds objects with ``transition(ts, start,
stimulus_id)``, called after every state change (``ts.state`` is the new state), and
``new_keys(client_id, keys)``, called for the keys a client asks for in each
`update-graph`. Observers never change the state; the I/O shell adds and removes them
(one per open progress bar or `get_task_metadata` block, one for all scheduler plugins
with a `transition` hook, `shoal/scheduler/plugins.py`). With no observer the cost is
one falsy check per transition.

* `ProgressWatch` counts, per group (the key prefix), how many tasks of a watched graph
  are done, erred or cancelled, so a progress bar polls a few counters instead of asking
  about keys.
* `MetadataWatch` records the final state (and metadata) of every key asked for while it
  is active, the moment it finishes, before the task can be forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shoal.utils import Key, key_prefix

#: counter slots of a progress group
TOTAL, DONE, ERRED, CANCELLED = 0, 1, 2, 3

#: a task leaving the active states this way will not finish for the watch
_CANCELLED_STATES = frozenset(["released", "forgotten"])


class ProgressWatch:
    """Progress of everything the given keys need: the keys and, recursively, their
    dependencies that are not in memory yet (a task in memory needs nothing more). With
    `complete`, tasks already done count towards both total and done."""

    __slots__ = ("complete", "groups", "on_finish", "owner", "pending", "version")

    def __init__(self, tasks: dict[Key, Any], keys: Iterable[Key], complete: bool = True, owner: Any = None):
        self.owner = owner
        self.complete = complete
        #: group name -> [total, done, erred, cancelled]
        self.groups: dict[str, list[int]] = {}
        #: keys not finished yet -> their group's counters
        self.pending: dict[Key, list[int]] = {}
        #: bumped on every counted change (pollers compare it)
        self.version = 0
        #: called once when nothing is pending any more
        self.on_finish: Callable[[], None] | None = None
        groups = self.groups
        seen: set[Key] = set()
        stack: list[Any] = []
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            ts = tasks.get(key)
            if ts is None:  # never submitted, or already forgotten: it will not finish
                g = groups.setdefault(key_prefix(key), [0, 0, 0, 0])
                g[TOTAL] += 1
                g[CANCELLED] += 1
            else:
                stack.append(ts)
        while stack:
            ts = stack.pop()
            g = groups.setdefault(ts.prefix, [0, 0, 0, 0])
            state = ts.state
            if state == "memory":
                if complete:
                    g[TOTAL] += 1
                    g[DONE] += 1
                continue
            g[TOTAL] += 1
            if state == "erred":
                g[ERRED] += 1
                continue
            self.pending[ts.key] = g
            for dts in ts.dependencies:
                if dts.key not in seen:
                    seen.add(dts.key)
                    stack.append(dts)
        for name in [n for n, g in groups.items() if not g[TOTAL]]:
            del groups[name]

    @property
    def finished(self) -> bool:
        return not self.pending

    def transition(self, ts: Any, start: str, stimulus_id: str = "") -> None:
        state = ts.state
        if state == "memory":
            slot = DONE
        elif state == "erred":
            slot = ERRED
        elif state in _CANCELLED_STATES and start != "memory" and start != "erred":
            slot = CANCELLED
        else:
            return
        g = self.pending.pop(ts.key, None)
        if g is None:
            return
        g[slot] += 1
        self.version += 1
        if not self.pending and self.on_finish is not None:
            self.on_finish()

    def new_keys(self, client_id: str, keys: tuple) -> None:
        pass

    def counts(self) -> dict[str, tuple]:
        """`{group: (total, done, erred, cancelled)}`"""
        return {name: tuple(g) for name, g in self.groups.items()}


class MetadataWatch:
    """Final state of each key asked for (by any client) while the watch is active."""

    __slots__ = ("keys", "metadata", "state")

    def __init__(self) -> None:
        self.keys: set[Key] = set()
        self.metadata: dict[Key, dict] = {}
        self.state: dict[Key, str] = {}

    def new_keys(self, client_id: str, keys: tuple) -> None:
        self.keys.update(keys)

    def transition(self, ts: Any, start: str, stimulus_id: str = "") -> None:
        state = ts.state
        if (state == "memory" or state == "erred") and ts.key in self.keys:
            self.keys.discard(ts.key)
            self.state[ts.key] = state
            self.metadata[ts.key] = task_metadata(ts)


def task_metadata(ts: Any) -> dict:
    """What the scheduler knows about a finished task, as plain data."""
    meta: dict[str, Any] = {"prefix": ts.prefix, "state": ts.state}
    if ts.state == "memory":
        meta["nbytes"] = ts.nbytes
        meta["type"] = ts.type_name
        meta["workers"] = sorted(ws.address for ws in ts.who_has)
    elif ts.state == "erred":
        meta["exception_text"] = ts.exception_text
    return meta
