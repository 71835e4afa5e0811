"""`shoal.print` and `shoal.warn`: print or warn inside a task, on the worker *and* on
every client's terminal.

Inside a task they log an event on the ``"print"`` / ``"warn"`` topic (plain data:
strings and flags, never pickles) and then print or warn locally as usual; outside a
task they are the builtins. Every client subscribes to both topics when it connects and
replays them with `handle_print` / `handle_warn`.
"""

from __future__ import annotations

import builtins
import sys
import warnings
from typing import Any, TextIO

from shoal._context import current_worker, in_task

__all__ = ["handle_print", "handle_warn", "print", "warn"]


def _task_worker() -> Any:
    worker = current_worker()
    if worker is None or not in_task():
        return None
    return worker


def print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: TextIO | None = None, flush: bool = False
) -> None:
    """`builtins.print`, also shown by the clients when called inside a task. `file` must
    be None, ``sys.stdout`` or ``sys.stderr``."""
    worker = _task_worker()
    if worker is not None:
        msg: dict[str, Any] = {"args": tuple(map(str, args)), "sep": sep, "end": end, "flush": flush}
        if file is sys.stdout:
            msg["file"] = 1
        elif file is sys.stderr:
            msg["file"] = 2
        elif file is not None:
            raise TypeError(
                "Remote printing to arbitrary file objects is not supported. file "
                f"kwarg must be one of None, sys.stdout, or sys.stderr; got: {file!r}"
            )
        worker.log_event("print", msg)
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


def warn(message: Any, category: type[Warning] | None = UserWarning, stacklevel: int = 1, source: Any = None) -> None:
    """`warnings.warn`, also raised on the clients when called inside a task."""
    worker = _task_worker()
    if worker is not None:
        cls = type(message) if isinstance(message, Warning) else (category or UserWarning)
        worker.log_event("warn", {"message": str(message), "category": f"{cls.__module__}.{cls.__qualname__}"})
    warnings.warn(message, category, stacklevel + 1, source)


def handle_print(event: tuple) -> None:
    """Client side of `print`: write what a task printed to this process's stdout/stderr."""
    _, msg = event
    if not isinstance(msg, dict):
        builtins.print(msg)
        return
    args = msg.get("args")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"handle_print: non-tuple print args: {args!r}")
    file = {1: sys.stdout, 2: sys.stderr, None: None}.get(msg.get("file"), None)
    builtins.print(*args, sep=msg.get("sep"), end=msg.get("end"), file=file, flush=bool(msg.get("flush")))


def _warning_category(name: Any) -> type[Warning]:
    """The warning class called `name` if its module is already imported here (never
    imports anything on a remote peer's say-so), else `UserWarning`."""
    if isinstance(name, str) and "." in name:
        module, _, qualname = name.rpartition(".")
        obj: Any = sys.modules.get(module)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, Warning):
            return obj
    return UserWarning


def handle_warn(event: tuple) -> None:
    """Client side of `warn`: raise the task's warning here."""
    _, msg = event
    if not isinstance(msg, dict):
        warnings.warn(str(msg), stacklevel=2)
        return
    if "message" not in msg:
        raise TypeError('handle_warn: a warn event is missing the required "message" argument.')
    warnings.warn(str(msg["message"]), category=_warning_category(msg.get("category")), stacklevel=2)
