"""A library's own serialization registered with `dask_serialize` / `dask_deserialize`
is what shoal uses for its type (its frames out-of-band), on the way to a task and back."""

from __future__ import annotations

from shoal.protocol import deserialize, serialize
from shoal.protocol.serialize import dumps, loads
from tests.registry_types import Blob, inspect_blob


def test_registered_type_pickles_through_its_serializer():
    big = b"x" * 100_000
    p = dumps([Blob(big)])
    assert p.buffers and sum(memoryview(b).nbytes for b in p.buffers) >= len(big)  # out-of-band frame
    (back,) = loads(p)
    assert back.how == "dask_deserialize" and back.payload == big


def test_serialize_functions():
    header, frames = serialize(Blob(b"abc"))
    assert header["serializer"] == "dask" and frames == [b"abc"]
    assert deserialize(header, frames).how == "dask_deserialize"
    header, frames = serialize({"plain": 1})
    assert header["serializer"] == "pickle" and deserialize(header, frames) == {"plain": 1}


def test_registered_type_through_a_cluster(client):
    future = client.submit(inspect_blob, Blob(b"y" * 5000))
    assert future.result() == ("dask_deserialize", 5000)
    blob = client.submit(lambda: Blob(b"z" * 10, how="made on the worker")).result()
    assert blob.how == "dask_deserialize" and blob.payload == b"z" * 10
