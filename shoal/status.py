"""`Status`: the lifecycle states of clusters, schedulers, workers and nannies
(distributed's `distributed.core.Status`, also at `shoal.core.Status`).

It is a `StrEnum`, so a status compares equal to its text as well (`cluster.status ==
Status.running` and `== "running"` both hold; in distributed only the first does).
`StatusAttribute` is the descriptor the classes use: code assigns either a member or its
text, and readers always get a member when the text names one.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["Status", "StatusAttribute"]


class Status(enum.StrEnum):
    undefined = "undefined"
    created = "created"
    init = "init"
    starting = "starting"
    running = "running"
    paused = "paused"
    stopping = "stopping"
    stopped = "stopped"
    closing = "closing"
    closing_gracefully = "closing_gracefully"
    closed = "closed"
    failed = "failed"
    dont_reply = "dont_reply"


_BY_VALUE = {s.value: s for s in Status} | {"closing-gracefully": Status.closing_gracefully}


class StatusAttribute:
    """`status = StatusAttribute()` in a class body: assigning text stores the `Status`
    member of that name (other text, e.g. a client's "newly-created", is kept as is)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self._slot, Status.undefined)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = _BY_VALUE.get(value, value) if isinstance(value, str) else value
