"""A task's exception as the client raises it: with the task's own frames, rebuilt afresh
for every raise (so the traceback is as long on the tenth `.result()` as on the first)
and shortened as `shoal.admin.traceback.shorten` says.

`mark_remote` tags an exception the client rebuilt from a task's error with the frames the
worker sent; `remote_traceback` gives a new traceback of those frames (None for any other
exception). The places that hand a task's error to user code (`Future.result`,
`Client.sync`, awaiting a future) re-raise it with that traceback, so none of the event
loop's or the client's frames stay in it. With `python script.py`, `install_excepthook`
also leaves out the one frame of the re-raise, as IPython and pytest do for frames marked
`__tracebackhide__`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from shoal import config
from shoal.protocol.tracebacks import rebuild, shorten

_ATTR = "_shoal_task_frames"


def mark_remote(exc: BaseException, frames: Any) -> None:
    """Remember that `exc` is a task's error, raised remotely in `frames`."""
    try:
        setattr(exc, _ATTR, list(frames or ()))
    except Exception:  # an exception type without a __dict__: raised as it is
        pass


def shorten_patterns() -> Any:
    value = config.get("admin.traceback.shorten")
    return value if value else []


def remote_traceback(exc: BaseException) -> types.TracebackType | None:
    """A fresh traceback of the task's frames of `exc` (None when `exc` is no task's error)."""
    frames = getattr(exc, _ATTR, None)
    if frames is None:
        return None
    return rebuild(shorten(_with_source_files(frames), shorten_patterns()))


_DYNAMIC = "<dynamic-code>"


def _with_source_files(frames: list) -> list:
    """cloudpickle sends the functions of a script or notebook by value with
    `<dynamic-code>` as their file: give such frames back the file of the function of that
    name in this process's `__main__` (whose source a traceback can then show)."""
    if not any(f[0] == _DYNAMIC for f in frames):
        return frames
    main = vars(sys.modules.get("__main__") or types.ModuleType("__main__"))
    out = []
    for filename, lineno, name in frames:
        if filename == _DYNAMIC:
            code = getattr(main.get(name), "__code__", None)
            if code is not None and code.co_name == name and code.co_firstlineno <= lineno:
                filename = code.co_filename
        out.append((filename, lineno, name))
    return out


def _hidden(tb: types.TracebackType | None) -> types.TracebackType | None:
    """`tb` without the entries of frames that set `__tracebackhide__`."""
    head: types.TracebackType | None = None
    prev: types.TracebackType | None = None
    while tb is not None:
        nxt = tb.tb_next
        if not tb.tb_frame.f_locals.get("__tracebackhide__", False):
            if prev is None:
                head = tb
            else:
                prev.tb_next = tb
            prev = tb
        tb = nxt
    if prev is not None:
        prev.tb_next = None
    return head


def _excepthook(exc_type: type, exc: BaseException, tb: types.TracebackType | None) -> None:
    if getattr(exc, _ATTR, None) is not None and shorten_patterns():
        tb = _hidden(tb) or tb
    _previous(exc_type, exc, tb)


_previous: Any = sys.__excepthook__


def install_excepthook() -> None:
    """Leave shoal's re-raise frame out of uncaught task errors printed by the default
    `sys.excepthook` (a hook someone else installed is left alone)."""
    global _previous
    if sys.excepthook is sys.__excepthook__:
        _previous = sys.excepthook
        sys.excepthook = _excepthook
