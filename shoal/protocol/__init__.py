"""Pure protocol layer: typed wire messages, serialization and framing. No I/O.

distributed's `distributed.protocol` names (its serialization registries and functions)
are available here, imported on first use.
"""

__all__ = ["dask_deserialize", "dask_serialize", "deserialize", "register_serialization", "serialize"]

from shoal._names import lazy_exports
from shoal.protocol import serialize as _serialize_module  # noqa: F401  first: the function below wins
from shoal.protocol.registries import dask_deserialize, dask_serialize, deserialize, register_serialization, serialize

_ALT = "shoal pickles everything (protocol 5, buffers out-of-band); use shoal.protocol.serialize.dumps/loads"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Pickled": "shoal.protocol.serialize:Pickled",
        "dumps": "shoal.protocol.serialize:dumps",
        "loads": "shoal.protocol.serialize:loads",
    },
    dict.fromkeys(
        ["Serialize", "Serialized", "ToPickle", "decompress", "deserialize_bytes", "maybe_compress", "register_generic",
         "register_serialization_family", "serialize_bytelist", "serialize_bytes", "to_serialize"],
        _ALT,
    ),  # fmt: skip
)
