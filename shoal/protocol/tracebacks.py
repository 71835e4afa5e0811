"""Tracebacks that cross processes: reduced to plain frame tuples, rebuilt as real
traceback objects so `traceback.extract_tb` and debuggers show the remote user frames."""

from __future__ import annotations

import types
from typing import Any


def frames_of(tb: types.TracebackType | None, skip_modules: tuple[str, ...] = ()) -> list[tuple]:
    """`[(filename, lineno, name), ...]`, dropping leading frames from `skip_modules`
    (the worker's own machinery) so only user code remains."""
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    while out and any(m in out[0][0] for m in skip_modules) and len(out) > 1:
        out.pop(0)
    return out


def rebuild(frames: Any) -> types.TracebackType | None:
    """A real traceback whose frames carry the given filenames, line numbers and names."""
    tb: types.TracebackType | None = None
    for filename, lineno, name in reversed(list(frames or ())):
        try:
            code = compile("\n" * (int(lineno) - 1) + "raise __shoal_exc__", str(filename), "exec")
            code = code.replace(co_name=str(name))
        except (SyntaxError, ValueError, TypeError, OverflowError):
            continue
        try:
            exec(code, {"__shoal_exc__": _Marker(), "__name__": "__remote__"})
        except _Marker as marker:
            frame_tb = marker.__traceback__
            assert frame_tb is not None and frame_tb.tb_next is not None
            this = frame_tb.tb_next  # skip the frame of this function
            tb = types.TracebackType(tb, this.tb_frame, this.tb_lasti, this.tb_lineno)
    return tb


class _Marker(Exception):
    pass
