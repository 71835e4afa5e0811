"""The recent log lines of this process, kept in memory for `get_scheduler_logs`,
`get_worker_logs` and `Cluster.get_logs`.

One bounded handler (`shoal.admin.log-length` lines, 10,000 by default) on the `shoal`
logger per process, installed by every scheduler, worker and nanny when it starts (the
same one when several run in one process). It keeps level names and formatted lines and
records only what the logger's level lets through.
"""

from __future__ import annotations

import collections
import logging
import threading

from shoal import config

_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class DequeHandler(logging.Handler):
    """Keeps the last `n` records: their level names and formatted lines, in two
    deques of the same bound (a pair a line would cost 56 bytes more)."""

    def __init__(self, n: int):
        super().__init__()
        self.levels: collections.deque[str] = collections.deque(maxlen=max(0, n))
        self.lines: collections.deque[str] = collections.deque(maxlen=max(0, n))
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        try:
            line = self.format(record)
            self.levels.append(record.levelname)
            self.lines.append(line)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def records(self) -> list[tuple[str, str]]:
        """`(level name, line)` of the lines kept, oldest first."""
        with self.lock:
            return list(zip(self.levels, self.lines))


_handler: DequeHandler | None = None
_lock = threading.Lock()


def install() -> DequeHandler:
    """Attach the process's handler to the `shoal` logger (once) and return it."""
    global _handler
    with _lock:
        if _handler is None:
            _handler = DequeHandler(int(config.get("admin.log-length")))
            logging.getLogger("shoal").addHandler(_handler)
        return _handler


def recent(n: int | None = None) -> list[tuple[str, str]]:
    """The last `n` (all when None) `(level, line)` entries of this process, newest first."""
    lines = install().records()
    lines.reverse()
    return lines if n is None else lines[:n]
