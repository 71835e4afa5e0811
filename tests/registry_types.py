"""A type with its own serialization registered with distributed's registries, as a
library would (importable by worker processes)."""

from __future__ import annotations

from shoal.protocol import dask_deserialize, dask_serialize


class Blob:
    def __init__(self, payload: bytes, how: str = "made"):
        self.payload = payload
        self.how = how


@dask_serialize.register(Blob)
def _serialize_blob(blob: Blob):
    return {"length": len(blob.payload)}, [blob.payload]


@dask_deserialize.register(Blob)
def _deserialize_blob(header, frames):
    assert len(frames[0]) == header["length"]
    return Blob(bytes(frames[0]), how="dask_deserialize")


def inspect_blob(blob: Blob):
    return blob.how, len(blob.payload)
