"""Every public exception of shoal, with the types and messages `distributed` users expect.

`TimeoutError` is the builtin (as in `distributed`), `CancelledError` is
`concurrent.futures.CancelledError` (not asyncio's). Transport errors (`CommClosedError`,
`AuthenticationError`) live in `shoal.comm.errors` and are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import CancelledError
from typing import Any

TimeoutError = TimeoutError  # noqa: A001  -- the builtin, exactly as distributed exposes it

__all__ = [
    "InvalidTransition",
    "ReentrantStimulus",
    "CancelledError",
    "ClosedClientError",
    "FutureCancelledError",
    "FuturesCancelledError",
    "KilledWorker",
    "Reschedule",
    "TimeoutError",
    "WorkerStartTimeoutError",
]


class FutureCancelledError(CancelledError):
    """`result()` or `gather` on a cancelled future."""

    def __init__(self, key: Any, reason: str | None = None, msg: str | None = None):
        self.key = key
        self.reason = reason if reason is not None else "unknown"
        self.msg = msg
        super().__init__(key, self.reason, msg)

    def __str__(self) -> str:
        text = f"{self.key} cancelled for reason: {self.reason}."
        if self.msg:
            text += "\n" + self.msg
        return text

    def __reduce__(self):  # type: ignore[override]
        return FutureCancelledError, (self.key, self.reason, self.msg)


class FuturesCancelledError(CancelledError):
    """`wait()` or `futures_of(..., client=c)` met cancelled futures."""

    def __init__(self, error_groups: list[CancelledError]):
        self.error_groups = error_groups
        super().__init__(error_groups)

    def __str__(self) -> str:
        count = sum(len(getattr(g, "keys", ())) or 1 for g in self.error_groups)
        by_reason: dict[str, list[Any]] = defaultdict(list)
        for err in self.error_groups:
            by_reason[getattr(err, "reason", "unknown")].append(getattr(err, "key", err))
        lines = [f"{count} Future(s) cancelled:", "Reasons:"]
        for reason, keys in by_reason.items():
            lines.append(f"- {reason}: {', '.join(map(str, keys))}")
        return "\n".join(lines)


class ClosedClientError(Exception):
    """An operation was attempted on a closed client."""


class KilledWorker(Exception):
    """A task was executing on `allowed-failures + 1` workers that all died."""

    def __init__(self, task: Any, last_worker: Any, allowed_failures: int, reason: str | None = None):
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures
        #: why the last worker went away, as the scheduler heard it (its nanny's word)
        self.reason = reason
        super().__init__(task, last_worker, allowed_failures, reason)

    def __str__(self) -> str:
        text = (
            f"Attempted to run task {self.task!r} on {self.allowed_failures + 1} different "
            f"workers, but all those workers died while running it. The last worker that "
            f"attempted to run the task was {self.last_worker}."
        )
        if self.reason and "memory" in self.reason:
            text += (
                f" It ran out of memory: its nanny restarted it because it {self.reason}. The task"
                " probably needs more memory than a worker has: give workers a larger memory_limit,"
                " or split the work into smaller pieces."
            )
        elif self.reason:
            text += f" It went away: {self.reason}."
        return text


class Reschedule(Exception):
    """Raise inside a task to send it back to the scheduler to be run again."""


class WorkerStartTimeoutError(TimeoutError):
    """`wait_for_workers` ran out of time."""

    def __init__(self, available_workers: int, expected_workers: int, timeout: float):
        self.available_workers = available_workers
        self.expected_workers = expected_workers
        self.timeout = timeout
        super().__init__(available_workers, expected_workers, timeout)

    def __str__(self) -> str:
        t = self.timeout
        when = f"{t * 1000:g} ms" if t < 1 else f"{t:g} s"
        return f"Only {self.available_workers}/{self.expected_workers} workers arrived after {when}"


class InvalidTransition(RuntimeError):
    """A state machine (scheduler or worker) was asked to move a key along no edge of its
    transition table; carries the key's story. Pickles (it may cross processes)."""

    def __init__(self, key: Any, start: str, finish: str, story: list):
        self.key, self.start, self.finish, self.story = key, start, finish, story
        super().__init__(f"invalid transition of {key!r}: {start} -> {finish}\nstory: {story}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.key, self.start, self.finish, self.story))


class ReentrantStimulus(RuntimeError):
    """A state machine's `handle_stimulus` was called while it was already running (e.g.
    from an observer's `transition` hook): events must queue behind the current
    stimulus, not nest in it."""
