"""Pure protocol layer: typed wire messages, serialization and framing. No I/O.

`dask_serialize` / `dask_deserialize` (the registries for user types, as in
`distributed.protocol`) are importable from here."""

from shoal.protocol.families import dask_deserialize, dask_serialize

__all__ = ["dask_deserialize", "dask_serialize"]
