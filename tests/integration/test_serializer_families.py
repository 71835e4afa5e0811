"""`Client(serializers=..., deserializers=...)` and the `dask_serialize` registries
(issue 17, item 11): a client that names only ``msgpack`` neither sends nor loads
anything that needs pickle, on every path data takes; user types with a registered
``(header, frames)`` form travel through it."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from task_functions import inc

from shoal import Client, Queue, Variable, get_client
from shoal.protocol import dask_deserialize, dask_serialize


class Opaque:
    """A user type: needs pickle (a class) to travel."""

    def __init__(self, v):
        self.v = v


def make_opaque():
    return Opaque(1)


def plain_data():
    return {"a": [1, 2.5, "x", b"y", (None, True)], "s": {3}}


def big_plain():
    return b"z" * 200_000  # larger than an inline result: fetched from the worker


def fails():
    raise KeyError("missing thing")


@pytest.fixture
def family_client(cluster, transport):
    made = []

    def make(**kwargs):
        target = cluster.scheduler_address if transport == "tcp" else cluster
        c = Client(target, security=cluster.security, set_as_default=False, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------- deserializers

#: every path by which data from the cluster reaches the client
RECEIVE = {
    "result-inline": lambda c, v: c.submit(lambda: v, pure=False).result(),
    "result-fetched": lambda c, v: c.submit(lambda: [v, b"z" * 200_000], pure=False).result()[0],
    "gather": lambda c, v: c.gather([c.submit(lambda: v, pure=False)])[0],
    "variable": lambda c, v: _via_variable(c, v),
    "queue": lambda c, v: _via_queue(c, v),
    "run": lambda c, v: list(c.run(lambda: v).values())[0],
    "run_on_scheduler": lambda c, v: c.run_on_scheduler(lambda: v),
    "dataset": lambda c, v: _via_dataset(c, v),
}


def _via_dataset(c, v):
    name = _name("dataset")
    c.submit(lambda: get_client().publish_dataset(v, name=name), pure=False).result()
    try:
        return c.get_dataset(name)
    finally:
        c.unpublish_dataset(name)


def _via_variable(c, v):
    name = _name("var")
    c.submit(lambda: Variable(name).set(v), pure=False).result()
    return Variable(name, client=c).get(timeout=10)


def _via_queue(c, v):
    name = _name("queue")
    c.submit(lambda: Queue(name).put(v), pure=False).result()
    return Queue(name, client=c).get(timeout=10)


@pytest.mark.parametrize("path", sorted(RECEIVE))
def test_msgpack_only_client_loads_plain_data(family_client, path):
    c = family_client(deserializers=["msgpack"])
    assert RECEIVE[path](c, plain_data()) == plain_data()


@pytest.mark.parametrize("path", sorted(RECEIVE))
@pytest.mark.parametrize("value", [Opaque(1), np.arange(3)], ids=["user-class", "numpy"])
def test_msgpack_only_client_refuses_pickled_data(family_client, path, value):
    c = family_client(deserializers=["msgpack"])
    with pytest.raises(TypeError, match=r"only able to deserialize data with \['msgpack'\]"):
        RECEIVE[path](c, value)


def test_default_client_loads_everything(family_client):
    c = family_client()
    assert c.submit(make_opaque).result().v == 1
    assert list(c.submit(np.arange, 3).result()) == [0, 1, 2]


def test_task_errors_without_and_with_the_error_family(family_client):
    plain = family_client(deserializers=["msgpack"])
    with pytest.raises(RuntimeError, match="missing thing"):  # rebuilt here from its text
        plain.submit(fails).result()
    errors = family_client(deserializers=["msgpack", "error"])
    with pytest.raises(KeyError, match="missing thing"):  # the original type
        errors.submit(fails).result()


def test_fetched_plain_result(family_client):
    c = family_client(deserializers=["msgpack"])
    assert c.submit(big_plain).result() == big_plain()


# ---------------------------------------------------------------------- serializers

#: every path by which this client sends data
SEND = {
    "submit": lambda c, v: c.submit(inc, v),
    "submit-keyword": lambda c, v: c.submit(lambda x=None: x, x=v),
    "map": lambda c, v: c.map(inc, [v]),
    "scatter": lambda c, v: c.scatter([v]),
    "variable": lambda c, v: Variable(_name("var"), client=c).set(v),
    "queue": lambda c, v: Queue(_name("queue"), client=c).put(v),
    "bounded-queue": lambda c, v: Queue(_name("queue"), client=c, maxsize=2).put(v),
}


@pytest.mark.parametrize("path", sorted(SEND))
def test_msgpack_only_client_refuses_to_send_pickled_data(family_client, path):
    c = family_client(serializers=["msgpack"])
    with pytest.raises(TypeError, match=r"serializers=\['msgpack'\].*Opaque"):
        SEND[path](c, Opaque(2))


@pytest.mark.parametrize("path", sorted(SEND))
def test_msgpack_only_client_sends_plain_data(family_client, path):
    c = family_client(serializers=["msgpack"])
    SEND[path](c, 41)


def test_msgpack_only_client_gets_a_published_future(family_client):
    c = family_client(deserializers=["msgpack"])
    name = _name("dataset")
    c.submit(lambda: get_client().publish_dataset(get_client().submit(inc, 1), name=name), pure=False).result()
    assert c.get_dataset(name).result() == 2
    c.unpublish_dataset(name)


def test_msgpack_only_client_passes_futures(family_client):
    c = family_client(serializers=["msgpack"], deserializers=["msgpack"])
    x = c.submit(inc, 1)
    assert c.submit(inc, x).result() == 3
    assert c.submit(sum, [x, x, 1]).result() == 5


def test_unknown_family_is_rejected(cluster):
    with pytest.raises(ValueError, match="unknown serializers"):
        Client(cluster, serializers=["json"], set_as_default=False)


# ---------------------------------------------------------------------- dask_serialize


class Packed:
    """A user type with its own wire form."""

    calls = {"serialize": 0, "deserialize": 0}

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        raise TypeError("Packed travels only through dask_serialize")


def _unpack(p: Packed) -> int:
    return len(p.payload)


def _repack(p: Packed) -> Packed:
    return Packed(p.payload[::-1])


@pytest.fixture
def packed_registered():
    @dask_serialize.register(Packed)
    def ser(obj):
        Packed.calls["serialize"] += 1
        return {"n": len(obj.payload)}, [obj.payload]

    @dask_deserialize.register(Packed)
    def de(header, frames):
        Packed.calls["deserialize"] += 1
        assert len(frames[0]) == header["n"]
        return Packed(bytes(frames[0]))

    yield
    import copyreg

    dask_serialize._lookup.pop(Packed, None)  # leave no registration behind for other tests
    dask_deserialize._lookup.pop(Packed, None)
    copyreg.dispatch_table.pop(Packed, None)


def test_registered_type_travels_through_its_functions(client, packed_registered):
    Packed.calls.update(serialize=0, deserialize=0)
    big = bytes(range(256)) * 100  # out-of-band sized frame
    assert client.submit(_unpack, Packed(big)).result() == len(big)
    back = client.submit(_repack, Packed(b"abc")).result()
    assert back.payload == b"cba"
    nested = client.submit(lambda d: _unpack(d["k"][0]), {"k": [Packed(b"xy")]}).result()
    assert nested == 2
    assert Packed.calls["serialize"] >= 4 and Packed.calls["deserialize"] >= 4


class Holder:
    """An actor whose methods return plain data or a user object."""

    def plain(self):
        return [1, "two"]

    def opaque(self):
        return Opaque(3)


def test_msgpack_only_client_refuses_actor_handles(family_client):
    """An actor handle needs its class (its methods), so it is refused like any object."""
    c = family_client(deserializers=["msgpack"])
    with pytest.raises(TypeError, match="only able to deserialize"):
        c.submit(Holder, actor=True).result()
