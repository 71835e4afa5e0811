"""Finding instructions in what a `handle_stimulus` call returned, and recording the
transitions a state machine makes (`TransitionRecorder`)."""

from __future__ import annotations

from typing import Any

from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.worker.state import SendToScheduler

__all__ = ["TransitionRecorder", "matches", "to_client", "to_scheduler", "to_worker"]


def matches(msg: Any, kind: type | None = None, **fields: Any) -> bool:
    """Whether `msg` is a `kind` whose attributes equal `fields`."""
    if kind is not None and not isinstance(msg, kind):
        return False
    return all(getattr(msg, name, _MISSING) == value for name, value in fields.items())


def to_worker(out: list, kind: type | None = None, address: str | None = None, **fields: Any) -> list:
    """The messages for workers (for `address` only, when given) matching `kind` and
    `fields`, in order."""
    return [
        i.msg for i in out
        if type(i) is ToWorker and (address is None or i.address == address) and matches(i.msg, kind, **fields)
    ]  # fmt: skip


def to_client(out: list, kind: type | None = None, client: str | None = None, **fields: Any) -> list:
    """The messages for clients (for `client` only, when given) matching."""
    return [
        i.msg for i in out
        if type(i) is ToClient and (client is None or i.client_id == client) and matches(i.msg, kind, **fields)
    ]  # fmt: skip


def to_scheduler(out: list, kind: type | None = None, **fields: Any) -> list:
    """The messages a worker state machine sends to the scheduler, matching."""
    return [i.msg for i in out if type(i) is SendToScheduler and matches(i.msg, kind, **fields)]


_MISSING = object()


class TransitionRecorder:
    """A read-only observer that records every transition as ``(key, start, finish,
    stimulus_id)`` in `seen`: append it to a `SchedulerState`'s observers (it has their
    `transition` / `new_keys` hooks) or to a `WorkerState`'s (it is callable with a story
    entry)."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def transition(self, ts: Any, start: str, stimulus_id: str) -> None:
        self.seen.append((ts.key, start, ts.state, stimulus_id))

    def new_keys(self, client_id: str, keys: Any) -> None:
        pass

    def __call__(self, key: Any, start: str, finish: str, stimulus_id: str, *detail: Any) -> None:
        self.seen.append((key, start, finish, stimulus_id))
