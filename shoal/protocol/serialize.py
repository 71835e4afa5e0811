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
* ``dumps(obj, ref=f)`` pickles the object ``f`` inside ``obj`` as a reference
  (pickle's persistent id), and ``loads(p, ref=f)`` puts it back: many task specs
  can share one separately pickled function without each carrying a copy.
"""

from __future__ import annotations

import importlib
import io
import pickle
import sys
import threading
from typing import Any, Iterable, Sequence

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
        # most values have no out-of-band buffer: share one empty tuple rather than keep
        # an empty list (56 bytes) per task spec
        self.buffers: Sequence[Any] = (buffers if type(buffers) is list else list(buffers)) if buffers else ()

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


class _LeavesRef:
    """Pickler mixin: the object `ref` (by identity) is written as persistent id 0."""

    def __init__(self, file: Any, ref: object, buffer_callback: Any) -> None:
        super().__init__(file, protocol=_PROTOCOL, buffer_callback=buffer_callback)  # type: ignore[call-arg]
        self._ref = ref

    def persistent_id(self, obj: object) -> Any:
        return 0 if obj is self._ref and obj is not None else None


class _RefPickler(_LeavesRef, pickle.Pickler):
    pass


class _RefCloudPickler(_LeavesRef, cloudpickle.Pickler):
    pass


#: held while unpickling imports a module (`_Unpickler.find_class`)
_importing = threading.RLock()


class _Unpickler(pickle.Unpickler):
    """Unpickling that imports one module at a time per process. A worker unpickles in
    its event loop (fetched data) and its task threads (tasks) at once, and a fresh
    process imports numpy, pandas, dask from both: CPython's import lets a second thread
    see a submodule before it is bound to its package (python/cpython#149728), and
    numpy's lazy `__getattr__` then recurses (RecursionError) or loads its C module a
    second time ("cannot load module more than once per process"). A module already
    imported costs one dict lookup; only a first import takes the lock."""

    def find_class(self, module: str, name: str) -> Any:
        m = sys.modules.get(module)
        if m is None or getattr(getattr(m, "__spec__", None), "_initializing", False):
            with _importing:
                return super().find_class(module, name)
        return super().find_class(module, name)


class _RefUnpickler(_Unpickler):
    def __init__(self, file: Any, ref: object, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self._ref = ref

    def persistent_load(self, pid: Any) -> Any:
        if pid != 0:
            raise pickle.UnpicklingError(f"unknown persistent reference {pid!r}")
        return self._ref


_FRAMED = b"\x80\x05\x95"  # PROTO 5, FRAME <u64 length>


def _unframed(data: bytes) -> bytes:
    """A small pickle without its one 9-byte FRAME opcode (framing is optional and only
    helps big streams): task specs are stored by the scheduler, ~100 bytes each."""
    if len(data) < 4096 and data[:3] == _FRAMED and int.from_bytes(data[3:11], "little") == len(data) - 11:
        return data[:2] + data[11:]
    return data


def _dump_ref(pickler_cls: Any, obj: object, ref: object, callback: Any) -> bytes:
    f = io.BytesIO()
    pickler_cls(f, ref, callback).dump(obj)
    return f.getvalue()


def dumps(obj: object, ref: object = None) -> Pickled:
    """Serialize ``obj`` into a :class:`Pickled` (pickle 5, large buffers out-of-band).

    With ``ref``, that object (by identity) is left out as a reference that
    ``loads(p, ref=...)`` fills in. Raises ``TypeError`` / ``pickle.PicklingError``
    naming the type of ``obj`` when neither pickle nor cloudpickle can serialize it.
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
        if ref is None:
            header = pickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=callback)
        else:
            header = _dump_ref(_RefPickler, obj, ref, callback)
    except Exception as exc:  # lambdas, local functions, exotic reducers, ...
        first_exc = exc
    else:
        if _MAIN_MARKER not in header:
            return Pickled(_unframed(header), buffers)
    # Either plain pickle failed, or it referenced __main__ (which a worker cannot
    # import): redo it with cloudpickle, which pickles such objects by value.
    buffers.clear()
    try:
        if ref is None:
            header = cloudpickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=callback)
        else:
            header = _dump_ref(_RefCloudPickler, obj, ref, callback)
    except Exception as exc:
        raise _failure(obj, exc) from (first_exc or exc)
    # the kept exception's traceback holds this frame and its callers' (a cycle): drop it,
    # or e.g. the Future that `submit` of a lambda returns lives until the next GC
    first_exc = None
    return Pickled(_unframed(header), buffers)


def loads(p: Pickled, ref: object = None) -> Any:
    """Rebuild the object held by ``p`` (filling in ``ref`` where ``dumps`` left a
    reference).  Only ever called where user code runs.

    Unpickling imports modules, and two threads of one process (a worker's event loop
    fetching data, its task threads loading functions) may import the same package at
    once: imports made by unpickling take turns (`_Unpickler`). A thread importing
    outside unpickling (a task's own code) may still meet one inside it; when the
    package imports itself in a cycle (dask.dataframe does), CPython breaks the
    deadlock by handing one thread a half-initialized module, which fails with
    "partially initialized module". Then the other thread is still importing it:
    import it here too — that waits for the other thread to finish — and try again."""
    for attempt in range(_IMPORT_RETRIES + 1):
        try:
            if ref is None:
                return _Unpickler(io.BytesIO(p.header), buffers=p.buffers).load()
            return _RefUnpickler(io.BytesIO(p.header), ref, p.buffers).load()
        except ImportError as e:
            if attempt == _IMPORT_RETRIES or not e.name or "partially initialized module" not in str(e):
                raise
            importlib.import_module(e.name)
    raise AssertionError("unreachable")  # pragma: no cover


#: how often `loads` waits for a module another thread is importing and tries again
_IMPORT_RETRIES = 3


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
        data = cloudpickle.dumps(obj, protocol=_PROTOCOL)
    except Exception as exc:
        raise _failure(obj, exc) from (first_exc or exc)
    first_exc = None  # break the frame <-> traceback cycle (see `dumps`)
    return data


def loads_bytes(data: bytes | bytearray | memoryview) -> Any:
    """Inverse of :func:`dumps_bytes`."""
    return pickle.loads(data)


# distributed's registries (a library's own serialization of its types) and functions
from shoal.protocol.registries import (  # noqa: E402
    dask_deserialize,
    dask_serialize,
    deserialize,
    register_serialization,
    serialize,
)

from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    dict.fromkeys(
        ["ObjectDictSerializer", "Serialize", "Serialized", "ToPickle", "check_dask_serializable", "dask_dumps",
         "dask_loads", "deserialize_bytes", "import_allowed_module", "merge_and_deserialize", "msgpack_decode_default",
         "msgpack_dumps", "msgpack_encode_default", "msgpack_loads", "normalize_Serialized", "pickle_dumps",
         "pickle_loads", "register_generic", "register_serialization_family", "register_serialization_lazy",
         "serialization_error_loads", "serialize_and_split", "serialize_bytelist", "serialize_bytes",
         "sizeof_serialize", "sizeof_serialized", "to_serialize"],
        "shoal pickles everything (protocol 5, buffers out-of-band); use dumps/loads, or register a type's own "
        "serialization with dask_serialize/dask_deserialize",
    ),  # fmt: skip
)
