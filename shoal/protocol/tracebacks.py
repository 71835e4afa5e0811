"""Tracebacks that cross processes: reduced to plain frame tuples, rebuilt as real
traceback objects so `traceback.extract_tb` and debuggers show the remote user frames;
shortened (the frames of shoal's and dask's machinery left out, `shorten`) and long
error messages truncated (`truncate`) as `shoal.admin.traceback.shorten` and
`shoal.admin.max-error-length` say. Pure: the callers read the configuration."""

from __future__ import annotations

import re
import types
from typing import Any

#: at most this many frames cross the wire (a RecursionError has ~1000): the first and
#: the last ones, where the task started and where it failed
MAX_FRAMES = 100
_HEAD = 10


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


def capped(frames: list[tuple]) -> list[tuple]:
    """`frames`, at most `MAX_FRAMES` of them (the first few and the last ones)."""
    if len(frames) <= MAX_FRAMES:
        return frames
    return frames[:_HEAD] + frames[-(MAX_FRAMES - _HEAD) :]


def shorten(frames: Any, patterns: Any) -> list[tuple]:
    """`frames` without those whose file name matches one of the regular expressions
    `patterns` (none dropped when `patterns` is empty or False). The last frame, where the
    exception was raised, is always kept."""
    frames = list(frames or ())
    if not patterns or not frames:
        return frames
    exp = re.compile("|".join(f"(?:{p})" for p in patterns))
    kept = [f for f in frames[:-1] if not exp.search(str(f[0]))]
    kept.append(frames[-1])
    return kept


def truncate(exc: BaseException, limit: int) -> BaseException:
    """`exc`, or when its message is longer than `limit` characters a copy cut to `limit`
    that says so: of the same type when that type can be built from one message, else a
    `RuntimeError` naming the type. `limit` 0 or less: unchanged."""
    message = str(exc)
    if limit <= 0 or len(message) <= limit:
        return exc
    short = f"{message[:limit]}... [{len(message)} characters, cut at shoal.admin.max-error-length={limit}]"
    try:
        new = type(exc)(short)
        if str(new) != short:
            raise TypeError("the message does not round-trip")
    except Exception:
        new = RuntimeError(f"{type(exc).__name__}: {short}")
    new.__cause__, new.__suppress_context__ = exc.__cause__, exc.__suppress_context__
    return new


def rebuild(frames: Any) -> types.TracebackType | None:
    """A real traceback whose frames carry the given filenames, line numbers and names."""
    tb: types.TracebackType | None = None
    for filename, lineno, name in reversed(list(frames or ())):
        try:
            code = _raising_code(str(filename), int(lineno), str(name))
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


_TEMPLATE = compile("raise __shoal_exc__", "<shoal>", "exec")


def _no_columns_table(units: int) -> bytes:
    """A location table (CPython 3.11+) putting all `units` code units on the first line
    with no column information, so tracebacks show the source line without carets."""
    out = bytearray()
    while units > 0:
        n = min(8, units)
        out += bytes((0x80 | (13 << 3) | (n - 1), 0))  # "line only", line delta 0
        units -= n
    return bytes(out)


_TABLE = _no_columns_table(len(_TEMPLATE.co_code) // 2)


def _raising_code(filename: str, lineno: int, name: str) -> types.CodeType:
    """Code that raises `__shoal_exc__`, as if from line `lineno` of `name` in `filename`."""
    if lineno < 1:
        raise ValueError(lineno)
    try:
        return _TEMPLATE.replace(co_filename=filename, co_firstlineno=lineno, co_name=name, co_linetable=_TABLE)
    except (ValueError, TypeError):  # another location-table format: compile it there
        code = compile("\n" * (lineno - 1) + "raise __shoal_exc__", filename, "exec")
        return code.replace(co_name=name)


class _Marker(Exception):
    pass
