"""Forwarding of log records from tasks on workers to clients (`Client.forward_logging`).

Worker side: `install(logger_name, level, dask_worker=...)`, run on every current and
future worker as a worker setup, adds a handler to that logger which takes the records
emitted *inside tasks of that worker* (not the worker's own logging, and not records of
another in-process worker) and sends each, as plain data, to the scheduler
(`forward_log`). The scheduler passes it on to the clients that asked for that logger
(`forwarded_log`); the client rebuilds the `LogRecord`, sets its `worker` attribute to
the worker's address and hands it to the logger of the same name in its own process.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from shoal._context import task_state

#: `LogRecord` attributes sent over the wire (the message is sent formatted)
_ATTRS = (
    "name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName",
    "created", "msecs", "relativeCreated", "thread", "threadName", "processName", "process",
)  # fmt: skip


def record_to_dict(record: logging.LogRecord) -> dict:
    out = {name: getattr(record, name, None) for name in _ATTRS}
    out["msg"] = record.getMessage()
    out["args"] = None
    if record.exc_info:
        out["exc_text"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["exc_text"] = record.exc_text
    key = getattr(task_state, "key", None)
    out["key"] = key if isinstance(key, (str, int, float, tuple)) else str(key)
    return out


class _ForwardHandler(logging.Handler):
    def __init__(self, worker: Any, level: int):
        super().__init__(level)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        worker = self.worker
        if getattr(task_state, "worker", None) is not worker or getattr(task_state, "key", None) is None:
            return  # not inside one of this worker's tasks
        try:
            data = record_to_dict(record)
            worker.loop.call_soon_threadsafe(_send, worker, data)
        except Exception:  # noqa: BLE001 - logging must never break the task
            self.handleError(record)


def _send(worker: Any, data: dict) -> None:
    peer = worker.scheduler
    if peer is not None and not peer.closed:
        peer.notify("forward_log", record=data)


#: worker -> {logger name: its forwarding handler} (no attribute planted on the worker)
_by_worker: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _handlers(worker: Any) -> dict:
    handlers = _by_worker.get(worker)
    if handlers is None:
        handlers = _by_worker[worker] = {}
    return handlers


def install(logger_name: str | None, level: int, dask_worker: Any = None) -> None:
    """Worker setup: forward records of `logger_name` (None: the root logger) emitted in
    this worker's tasks; idempotent (a second call updates the level)."""
    handlers = _handlers(dask_worker)
    handler = handlers.get(logger_name)
    if handler is None:
        handler = handlers[logger_name] = _ForwardHandler(dask_worker, level)
        logging.getLogger(logger_name).addHandler(handler)
    handler.setLevel(level)


def uninstall(logger_name: str | None, dask_worker: Any = None) -> None:
    handler = _handlers(dask_worker).pop(logger_name, None)
    if handler is not None:
        logging.getLogger(logger_name).removeHandler(handler)


def matches(subscribed: str | None, name: str) -> bool:
    """Whether a record of logger `name` belongs to a subscription to `subscribed`."""
    return subscribed is None or name == subscribed or name.startswith(subscribed + ".")


def reemit(data: dict, worker: str) -> None:
    """Client side: hand a forwarded record to the local logger of the same name."""
    record = logging.makeLogRecord(data)
    record.worker = worker
    logging.getLogger(record.name).handle(record)


def setup_name(logger_name: str | None) -> str:
    return f"forward-logging-{logger_name or ''}"
