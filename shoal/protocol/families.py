"""Serializer families: which kinds of payload a client sends and accepts, and the
`dask_serialize` / `dask_deserialize` registries for user types. Pure: no I/O.

Every payload travels as a pickle-protocol-5 stream (`shoal.protocol.serialize`). The
families a client names (`Client(serializers=..., deserializers=...)`, distributed's
names: ``"dask"``, ``"pickle"``, ``"cloudpickle"``, ``"msgpack"``, ``"error"``) decide
what that stream may hold:

* with ``"pickle"``, ``"cloudpickle"`` or ``"dask"``: anything (the default);
* with only ``"msgpack"`` (and ``"error"``): plain data only -- None, booleans, numbers,
  strings, bytes, lists, tuples, dicts, sets. Such a stream is *loaded* by an
  unpickler that can neither import nor call anything (`load_plain`), so a client that
  refuses pickle runs no code from the cluster; a payload that needs a class fails with
  a `TypeError` naming it. Sending checks the same way, before anything leaves.
  Task functions always travel pickled (a task is code), as in distributed.

`dask_serialize.register(T)` gives type ``T`` a ``(header, frames)`` form; objects of a
registered type are written through it wherever they appear in a payload, and rebuilt
with `dask_deserialize` (which the receiving process must have registered too).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from dask.utils import Dispatch

__all__ = ["Families", "dask_deserialize", "dask_serialize", "load_plain"]

KNOWN = ("dask", "pickle", "cloudpickle", "msgpack", "error")
_ANY = frozenset({"dask", "pickle", "cloudpickle"})


class _Registry(Dispatch):
    """A `dask.utils.Dispatch` that counts registrations (the pickler only looks for
    registered types once there are some) and forgets its per-type answers on change."""

    def __init__(self, name: str):
        super().__init__(name)
        self.generation = 0

    def register(self, type: Any, func: Any = None) -> Any:  # noqa: A002 - Dispatch's name
        self.generation += 1
        out = super().register(type, func)
        self.generation += 1  # `register` as a decorator registers later, on the call
        return out if func is not None else self._counting(out)

    def _counting(self, decorator: Any) -> Any:
        def register_now(func: Any) -> Any:
            result = decorator(func)
            self.generation += 1
            return result

        return register_now

    def register_lazy(self, toplevel: str, func: Any = None) -> Any:
        self.generation += 1
        return super().register_lazy(toplevel, func)


dask_serialize = _Registry("dask_serialize")
dask_deserialize = _Registry("dask_deserialize")

_decisions: dict[type, Any] = {}
_decided_at = -1


def any_registered() -> bool:
    """Whether any type has a `dask_serialize` function (else pickling skips the look-up)."""
    return bool(dask_serialize._lookup) or bool(dask_serialize._lazy)


def registered_serializer(t: type) -> Any:
    """The `dask_serialize` function for type `t`, or None (cached per type)."""
    global _decided_at
    if _decided_at != dask_serialize.generation:
        _decisions.clear()
        _decided_at = dask_serialize.generation
    try:
        return _decisions[t]
    except KeyError:
        pass
    try:
        fn = dask_serialize.dispatch(t)
    except TypeError:
        fn = None
    _decisions[t] = fn
    return fn


def rebuild_registered(t: type, header: Any, frames: list) -> Any:
    """Unpickling side of a registered type (referenced by the pickle stream)."""
    try:
        fn = dask_deserialize.dispatch(t)
    except TypeError:
        raise TypeError(
            f"no dask_deserialize function registered for {t.__module__}.{t.__qualname__} in this process"
        ) from None
    return fn(header, [bytes(f) if isinstance(f, pickle.PickleBuffer) else f for f in frames])


def _normalize(names: Any, what: str) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; expected some of {list(KNOWN)}")
    if not names:
        raise ValueError(f"{what} must name at least one serializer family, got []")
    return names


#: classes plain data may name: building them runs no user code
_SAFE_CLASSES = frozenset({("dask._task_spec", "TaskRef")})


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, buffers: Any, families: tuple) -> None:
        super().__init__(file, buffers=buffers)
        self._families = families

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_CLASSES:  # references to other tasks' results
            return super().find_class(module, name)
        raise TypeError(
            f"Data serialized with pickle (it needs {module}.{name}) but only able to "
            f"deserialize data with {list(self._families)}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise TypeError(f"Data holds a reference, but only able to deserialize data with {list(self._families)}")


def load_plain(p: Any, families: tuple = ("msgpack",)) -> Any:
    """Load a `Pickled` that may hold plain data only; `TypeError` for anything that
    needs a class or a callable (nothing is imported or called)."""
    return _PlainUnpickler(io.BytesIO(p.header), p.buffers, families).load()


class Families:
    """A client's `serializers` / `deserializers` (None: every family)."""

    __slots__ = ("serializers", "deserializers", "send_any", "accept_any", "accept_errors")

    def __init__(self, serializers: Any = None, deserializers: Any = None):
        self.serializers = _normalize(serializers, "serializers")
        self.deserializers = _normalize(deserializers, "deserializers")
        self.send_any = self.serializers is None or bool(_ANY.intersection(self.serializers))
        self.accept_any = self.deserializers is None or bool(_ANY.intersection(self.deserializers))
        self.accept_errors = self.accept_any or "error" in (self.deserializers or ())

    def load(self, p: Any) -> Any:
        """Load a payload from the cluster, as far as the deserializers allow."""
        from shoal.protocol.serialize import loads

        if self.accept_any:
            return loads(p)
        return load_plain(p, self.deserializers or ())

    def check_send(self, p: Any, what: str) -> Any:
        """`p` (a `Pickled` of `what`) if the serializers allow sending it; else a
        `TypeError` naming what needs pickle."""
        if not self.send_any:
            try:
                load_plain(p, self.serializers or ())
            except TypeError as e:
                raise TypeError(f"cannot send {what} with serializers={list(self.serializers or ())}: {e}") from None
        return p
