"""Rate-limited logging of repeated failures: a flood costs a few lines, not one a failure.

A hostile or broken peer can fail thousands of handshakes or send thousands of bad
messages a second; logging each one fills the disk and drowns everything else. A
`LogLimiter` logs the first failure of each *kind* (a short fixed string such as
``"handshake"``, never anything a peer chooses) at once, then counts the following
ones and logs at most one line per `interval` seconds, saying how many it stood for.
What was counted but not yet logged is logged by `flush` (owners call it on close).

Pure apart from the clock, which is passed in (default `time.monotonic`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LogLimiter", "DEFAULT_INTERVAL", "limiter", "reset_all"]

DEFAULT_INTERVAL = 10.0


class LogLimiter:
    def __init__(
        self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic
    ):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        #: kind -> [time of the last line logged, failures counted since, last message]
        self._kinds: dict[str, list] = {}
        self._lock = threading.Lock()
        #: failures seen per kind since this limiter was made (for tests and metrics)
        self.totals: dict[str, int] = {}

    def log(self, level: int, kind: str, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless a line of this kind went out less than `interval`
        seconds ago (then only count it). True if a line was logged."""
        now = self.clock()
        with self._lock:
            self.totals[kind] = self.totals.get(kind, 0) + 1
            entry = self._kinds.get(kind)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                entry[2] = (level, msg, args)
                return False
            suppressed = entry[1] if entry is not None else 0
            self._kinds[kind] = [now, 0, None]
        if suppressed:
            msg = f"{msg} (and {suppressed} more {kind} failures in the last {self.interval:g} s)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, kind: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, kind, msg, *args)

    def reset(self) -> None:
        """Forget what was logged: the next failure of every kind is logged at once."""
        with self._lock:
            self._kinds.clear()

    def flush(self) -> None:
        """Log the counts of failures not logged yet (one line per kind)."""
        with self._lock:
            pending = [(kind, e[1], e[2]) for kind, e in self._kinds.items() if e[1]]
            for kind, _, _ in pending:
                self._kinds[kind][1] = 0
        for kind, n, last in pending:
            level, msg, args = last
            self.logger.log(level, f"{n} more {kind} failures, the last: {msg}", *args)


_limiters: dict[str, LogLimiter] = {}


def limiter(logger: logging.Logger) -> LogLimiter:
    """The one process-wide limiter of `logger` (so every listener of a process shares
    one budget)."""
    lim = _limiters.get(logger.name)
    if lim is None:
        lim = _limiters[logger.name] = LogLimiter(logger)
    return lim


def reset_all() -> None:
    """Reset every process-wide limiter (tests start each case with a fresh budget)."""
    for lim in list(_limiters.values()):
        lim.reset()
