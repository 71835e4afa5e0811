"""Serialization of user objects: pickle protocol 5 with out-of-band buffers.

This module owns :class:`Pickled`, the opaque form in which user payloads (task
functions, arguments, results) travel through shoal, and the functions that make
and unmake it.  It is pure: no asyncio, no sockets.

* :func:`dumps` tries the standard-library pickler first (fast) and falls back to
  ``cloudpickle`` for lambdas, local functions and anything defined in ``__main__``
  (which a worker process could not import, so it must travel by value).
* Buffers of at least :data:`OOB_THRESHOLD` bytes (numpy arrays, ...) are kept
  out-of-band, so the transport can send them as their own frames without copying;
  smaller ones stay inside the pickle stream so tiny arrays cost no extra frame.
* The scheduler carries :class:`Pickled` objects around without ever calling
  :func:`loads`: that is both faster and a security boundary.
"""

from __future__ import annotations

import pickle
from typing import Any, Iterable

import cloudpickle

__all__ = ["Pickled", "dumps", "loads", "dumps_bytes", "loads_bytes", "OOB_THRESHOLD"]

#: Buffers smaller than this many bytes are serialized in-band.
OOB_THRESHOLD = 2048

_PROTOCOL = 5
_MAIN_MARKER = b"__main__"


def _buffer_nbytes(buf: Any) -> int:
    if type(buf) is bytes or type(buf) is bytearray:
        return len(buf)
    if type(buf) is memoryview:
        return buf.nbytes
    return memoryview(buf).nbytes


class Pickled:
    """Opaque serialized user object: a pickle-protocol-5 stream plus its out-of-band buffers.

    The scheduler carries these around without ever unpickling them.  ``header`` is
    the pickle stream; ``buffers`` are the out-of-band buffers it refers to, in order.
    After a network transfer both are memoryviews into the received frames.
    """

    __slots__ = ("header", "buffers")

    def __init__(self, header: bytes | memoryview, buffers: Iterable[Any] = ()) -> None:
        self.header = header
        self.buffers = buffers if type(buffers) is list else list(buffers)

    @property
    def nbytes(self) -> int:
        """Total size in bytes: the pickle stream plus every out-of-band buffer."""
        n = _buffer_nbytes(self.header)
        for b in self.buffers:
            n += _buffer_nbytes(b)
        return n

    def __repr__(self) -> str:
        return (
            f"<Pickled header={_buffer_nbytes(self.header)} B, "
            f"{len(self.buffers)} buffer(s), {self.nbytes} B total>"
        )


def _type_name(obj: object) -> str:
    t = type(obj)
    mod = t.__module__
    if mod in ("builtins", None):
        return t.__qualname__
    return f"{mod}.{t.__qualname__}"


def _failure(obj: object, exc: BaseException) -> BaseException:
    """An exception of the same type as ``exc`` whose message names ``obj``'s type."""
    msg = f"Could not serialize object of type {_type_name(obj)}: {exc}"
    if isinstance(exc, pickle.PicklingError):
        return pickle.PicklingError(msg)
    if isinstance(exc, TypeError):
        return TypeError(msg)
    try:
        new = type(exc)(msg)
        if isinstance(new, Exception) and str(new) == msg:
            return new
    except Exception:
        pass
    return TypeError(msg)


def dumps(obj: object) -> Pickled:
    """Serialize ``obj`` into a :class:`Pickled` (pickle 5, large buffers out-of-band).

    Raises ``TypeError`` / ``pickle.PicklingError`` naming the type of ``obj`` when
    neither pickle nor cloudpickle can serialize it.
    """
    buffers: list[memoryview] = []

    def callback(pb: pickle.PickleBuffer) -> bool:
        mv = pb.raw()
        if mv.nbytes < OOB_THRESHOLD:
            return True  # true => serialize in-band
        buffers.append(mv)
        return False

    first_exc: BaseException | None = None
    try:
        header = pickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=callback)
    except Exception as exc:  # lambdas, local functions, exotic reducers, ...
        first_exc = exc
    else:
        if _MAIN_MARKER not in header:
            return Pickled(header, buffers)
    # Either plain pickle failed, or it referenced __main__ (which a worker cannot
    # import): redo it with cloudpickle, which pickles such objects by value.
    buffers.clear()
    try:
        header = cloudpickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=callback)
    except Exception as exc:
        raise _failure(obj, exc) from (first_exc or exc)
    return Pickled(header, buffers)


def loads(p: Pickled) -> Any:
    """Rebuild the object held by ``p``.  Only ever called where user code runs."""
    return pickle.loads(p.header, buffers=p.buffers)


def dumps_bytes(obj: object) -> bytes:
    """Serialize ``obj`` into one in-band pickle stream (for small control data)."""
    first_exc: BaseException | None = None
    try:
        data = pickle.dumps(obj, protocol=_PROTOCOL)
    except Exception as exc:  # lambdas, local functions, exotic reducers, ...
        first_exc = exc
    else:
        if _MAIN_MARKER not in data:
            return data
    try:
        return cloudpickle.dumps(obj, protocol=_PROTOCOL)
    except Exception as exc:
        raise _failure(obj, exc) from (first_exc or exc)


def loads_bytes(data: bytes | bytearray | memoryview) -> Any:
    """Inverse of :func:`dumps_bytes`."""
    return pickle.loads(data)
