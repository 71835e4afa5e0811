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

The `dask_serialize` / `dask_deserialize` registries for user types are
`shoal.protocol.registries`' (re-exported here).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from shoal.protocol import registries

__all__ = ["Families", "dask_deserialize", "dask_serialize", "load_plain"]

KNOWN = ("dask", "pickle", "cloudpickle", "msgpack", "error")
_ANY = frozenset({"dask", "pickle", "cloudpickle"})


dask_serialize = registries.dask_serialize
dask_deserialize = registries.dask_deserialize


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
_SAFE_CLASSES = frozenset({("dask._task_spec", "TaskRef"), ("shoal.client.futures", "_rebuild_future")})


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
