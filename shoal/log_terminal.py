"""What of shoal's logging reaches the user's terminal or notebook.

One `TerminalHandler` on the `shoal` logger per process, installed when `shoal` is
imported. It writes warnings and errors (the level `silence_logs` chooses) to the
*current* `sys.stderr` (a notebook's, pytest's), formatted with `shoal.admin.log-format`,
but only while the user has not configured logging themselves: as soon as the root logger
has a handler (`logging.basicConfig`, a framework, a `shoal.logging` dictConfig), shoal's
records reach the user's handlers by ordinary propagation and this handler stays quiet,
so nothing is printed twice and the user's levels and formats win.

`shoal.logging` has the shape of `distributed.logging`: either `{logger name: level}`
(levels set at import), or a full `logging.config.dictConfig` mapping (with `version: 1`).
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import threading
from typing import Any

from shoal import config

_LEVELS = {"critical": 50, "error": 40, "warn": 30, "warning": 30, "info": 20, "debug": 10, "notset": 0}


def user_configured() -> bool:
    """Whether the root logger has a handler: the user (or their framework) set logging up."""
    return bool(logging.getLogger().handlers)


class TerminalHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment, unless the user configured logging."""

    def __init__(self, level: int = logging.WARNING):
        super().__init__(sys.stderr)
        self.setLevel(level)
        self.setFormatter(logging.Formatter(str(config.get("admin.log-format"))))

    def filter(self, record: logging.LogRecord) -> bool:
        if user_configured():  # the user's configuration takes over
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler: TerminalHandler | None = None
_lock = threading.Lock()


def level_of(value: Any) -> int:
    """A logging level from an int or a name ('warning', 'INFO', ...)."""
    if isinstance(value, bool):
        raise TypeError(f"not a logging level: {value!r}")
    if isinstance(value, int):
        return value
    try:
        return _LEVELS[str(value).lower()]
    except KeyError:
        raise ValueError(f"unknown logging level {value!r}; use one of {sorted(_LEVELS)}") from None


def initialize() -> TerminalHandler:
    """Apply `shoal.logging` and install the terminal handler (once per process)."""
    global _handler
    with _lock:
        if _handler is not None:
            return _handler
        spec = config.get("logging") or {}
        if isinstance(spec, dict) and "version" in spec:
            logging.config.dictConfig(spec)
        else:
            for name, level in dict(spec).items():
                logging.getLogger(name).setLevel(level_of(level))
        _handler = TerminalHandler()
        logging.getLogger("shoal").addHandler(_handler)
        return _handler


def silence(level: Any) -> tuple[int, int]:
    """Show shoal's records of `level` and above on the terminal (`silence_logs=`);
    returns what `restore` needs to undo it. Lowers the `shoal` logger's own level when
    it would otherwise drop the records asked for."""
    handler = initialize()
    shoal_logger = logging.getLogger("shoal")
    old = (handler.level, shoal_logger.level)
    new = level_of(level)
    handler.setLevel(new)
    if new and shoal_logger.getEffectiveLevel() > new:
        shoal_logger.setLevel(new)
    return old


def restore(old: tuple[int, int]) -> None:
    """Undo a `silence` (when a cluster that set it closes)."""
    initialize().setLevel(old[0])
    logging.getLogger("shoal").setLevel(old[1])


def handle_worker_alert(event: tuple) -> None:
    """Client side of a nanny's `worker-restart` / `worker-restart-memory` event: one
    warning line in the client process, unless the nanny runs in this process (it has
    already said it here)."""
    _, msg = event
    if not isinstance(msg, dict) or msg.get("nanny_pid") == os.getpid():
        return
    logging.getLogger("shoal.client").warning(
        "Worker %s (pid=%s) %s; its nanny is restarting it", msg.get("worker"), msg.get("pid"), msg.get("reason")
    )
