"""distributed's serialization registries: `dask_serialize` / `dask_deserialize`.

Libraries register a type's own serialization with distributed
(`@dask_serialize.register(T) def f(x) -> (header, frames)` and
`@dask_deserialize.register(T) def g(header, frames) -> x`). shoal honours those
registrations: registering a type also registers it with `copyreg`, so shoal's pickling
(plain pickle and cloudpickle, which both read `copyreg.dispatch_table`) calls the
library's function, its frames travel out-of-band (pickle protocol 5 buffers), and the
receiving side rebuilds the object with the registered deserializer. Nothing is looked up
for types nobody registered (the dispatch table is pickle's own). `serialize` /
`deserialize` are distributed's functions over these registries, with pickle for
everything else. Pure: no I/O.
"""

from __future__ import annotations

import copyreg
import pickle
from typing import Any

from dask.utils import Dispatch

__all__ = ["dask_serialize", "dask_deserialize", "serialize", "deserialize", "register_serialization"]


def _rebuild(cls: type, header: dict, frames: list) -> Any:
    frames = [f.raw() if isinstance(f, pickle.PickleBuffer) else f for f in frames]
    return dask_deserialize.dispatch(cls)(header, frames)


def _reduce(obj: Any) -> Any:
    header, frames = dask_serialize(obj)
    buffers = [pickle.PickleBuffer(f) if isinstance(f, (bytes, bytearray, memoryview)) else f for f in frames]
    return _rebuild, (type(obj), header, buffers)


class _SerializeDispatch(Dispatch):
    """A `Dispatch` whose registrations also reach pickle (see the module docstring)."""

    def register(self, type: Any, func: Any = None) -> Any:  # noqa: A002 - dask's signature
        def wrapper(func: Any) -> Any:
            types = type if isinstance(type, tuple) else (type,)
            for t in types:
                Dispatch.register(self, t, func)
                copyreg.pickle(t, _reduce)
            return func

        return wrapper(func) if func is not None else wrapper


dask_serialize = _SerializeDispatch("dask_serialize")
dask_deserialize = Dispatch("dask_deserialize")


def register_serialization(cls: type, serialize: Any, deserialize: Any) -> None:
    """distributed's older spelling of the two registrations."""
    dask_serialize.register(cls)(serialize)
    dask_deserialize.register(cls)(deserialize)


def serialize(x: Any, serializers: Any = None, on_error: str = "message", context: Any = None) -> tuple[dict, list]:
    """`(header, frames)` for `x`: its registered `dask_serialize`, else pickle (protocol
    5, large buffers as frames of their own)."""
    try:
        header, frames = dask_serialize(x)
        return dict(header, serializer="dask", type=pickle.dumps(type(x))), list(frames)
    except TypeError:
        pass
    from shoal.protocol.serialize import dumps

    p = dumps(x)
    return {"serializer": "pickle"}, [p.header, *p.buffers]


def deserialize(header: dict, frames: list, deserializers: Any = None) -> Any:
    """The inverse of `serialize`."""
    if header.get("serializer") == "dask":
        cls = pickle.loads(header["type"])
        return dask_deserialize.dispatch(cls)(header, frames)
    from shoal.protocol.serialize import Pickled, loads

    return loads(Pickled(frames[0], list(frames[1:])))
