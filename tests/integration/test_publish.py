"""Published datasets: publish from one client, read from another, over both transports."""

from __future__ import annotations

import asyncio

import pytest
from conftest import poll
from task_functions import inc

from shoal import Client, Future


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def in_memory(client, key):
    return bool(client.who_has().get(key))


def released(client, key):
    return key not in client.who_has()


@pytest.fixture
def client2(cluster, client):
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _clean_datasets(client):
    yield
    names = client.list_datasets()
    if names:
        client.unpublish_dataset(list(names))


def test_publish_outlives_publisher(cluster, client):
    pub = Client(cluster, set_as_default=False)
    f = pub.submit(inc, 1, key="pub-outlives")
    assert f.result() == 2
    pub.publish_dataset(f, name="data")
    assert client.list_datasets() == ("data",)
    pub.close()
    del f
    g = client.get_dataset("data")
    assert isinstance(g, Future) and g.client is client
    assert g.result() == 2
    assert in_memory(client, "pub-outlives")


def test_three_forms(client, client2):
    f = client.submit(inc, 10)
    client.publish_dataset(f, name="one")
    client.publish_dataset(1, 2, name="tup")
    client.publish_dataset({"d1": [f, "x"], "d2": 5})
    client.publish_dataset(k1=f, k2={"y": f})
    assert client2.list_datasets() == ("d1", "d2", "k1", "k2", "one", "tup")
    assert client2.get_dataset("one").result() == 11
    assert client2.get_dataset("tup") == (1, 2)
    d1 = client2.get_dataset("d1")
    assert d1[1] == "x" and d1[0].result() == 11 and d1[0].client is client2
    assert client2.get_dataset("d2") == 5
    assert client2.get_dataset("k2")["y"].result() == 11
    assert client2.get_dataset(["d2", "tup"]) == [5, (1, 2)]


def test_bad_syntax(client):
    with pytest.raises(ValueError):
        client.publish_dataset(1)
    with pytest.raises(ValueError):
        client.publish_dataset()
    with pytest.raises(ValueError):
        client.publish_dataset(name="x")
    assert client.list_datasets() == ()


def test_key_names_sorted_by_str(client, client2):
    client.publish_dataset(1, name=("t", 1))
    client.publish_dataset(2, name=3)
    client.publish_dataset(3, name="b")
    assert client2.list_datasets() == tuple(sorted([("t", 1), 3, "b"], key=str))
    assert client2.get_dataset(("t", 1)) == 1
    assert client2.get_dataset(3) == 2
    client.unpublish_dataset(("t", 1))
    assert ("t", 1) not in client2.datasets


def test_existing_name_and_override(client, client2):
    f = client.submit(inc, 100, key="ovr-old")
    f.result()
    client.publish_dataset(f, name="x")
    with pytest.raises(KeyError, match="Dataset x already exists"):
        client.publish_dataset(123, name="x")
    with pytest.raises(KeyError, match="Dataset x already exists"):
        client.publish_dataset(y=1, x=2)  # all or nothing
    assert "y" not in client2.datasets
    del f
    assert in_memory(client, "ovr-old")  # the dataset keeps it
    client.publish_dataset(123, name="x", override=True)
    assert client2.get_dataset("x") == 123
    poll(lambda: released(client, "ovr-old"))


def test_override_keeps_shared_keys(client, client2):
    f = client.submit(inc, 200, key="ovr-shared")
    f.result()
    client.publish_dataset(f, name="s")
    client.publish_dataset([f, 1], name="s", override=True)
    del f
    g = client2.get_dataset("s")
    assert g[1] == 1 and g[0].result() == 201


def test_unpublish_releases(client, client2):
    f = client.submit(inc, 300, key="unpub-key")
    f.result()
    client.publish_dataset(f, name="u")
    del f
    assert in_memory(client, "unpub-key")
    client2.unpublish_dataset("u")
    assert client.list_datasets() == ()
    poll(lambda: released(client, "unpub-key"))
    client2.unpublish_dataset("never-existed")  # silently ignored


def test_unpublish_while_getter_holds(client, client2):
    f = client.submit(inc, 400, key="held-key")
    client.publish_dataset(f, name="h")
    del f
    g = client2.get_dataset("h")
    client.unpublish_dataset("h")
    assert g.result() == 401  # the getter's own future keeps it
    assert in_memory(client, "held-key")
    del g
    poll(lambda: released(client, "held-key"))


def test_get_defaults_and_errors(client):
    with pytest.raises(KeyError, match="Dataset 'nope' not found"):
        client.get_dataset("nope")
    assert client.get_dataset("nope", default=None) is None
    assert client.get_dataset("nope", 42) == 42
    client.publish_dataset(1, name="here")
    assert client.get_dataset(["here", "nope"], default=0) == [1, 0]
    with pytest.raises(KeyError, match="Dataset 'nope' not found"):
        client.get_dataset(["here", "nope"])


def test_missing_name_leaves_no_wants(client, client2):
    f = client.submit(inc, 500, key="strict-key")
    f.result()
    client.publish_dataset(f, name="s1")
    with pytest.raises(KeyError):
        client2.get_dataset(["s1", "nope"])
    client.unpublish_dataset("s1")
    del f
    poll(lambda: released(client, "strict-key"))


def test_datasets_mapping(client, client2):
    ds = client.datasets
    assert ds is client.datasets
    assert len(ds) == 0 and list(ds) == []
    f = client.submit(inc, 1)
    ds["m1"] = f
    ds["m2"] = [1, 2]
    assert "m1" in client2.datasets and "zzz" not in client2.datasets
    assert client2.datasets["m1"].result() == 2
    assert client2.datasets["m2"] == [1, 2]
    assert len(client2.datasets) == 2
    assert list(client2.datasets) == ["m1", "m2"]
    assert dict(client2.datasets.items())["m2"] == [1, 2]
    del client2.datasets["m1"]
    assert list(ds) == ["m2"]
    with pytest.raises(KeyError):
        del ds["m1"]
    with pytest.raises(KeyError, match="Dataset 'm1' not found"):
        ds["m1"]


def test_persisted_array_roundtrip(client, client2):
    da = pytest.importorskip("dask.array")
    np = pytest.importorskip("numpy")
    x = da.arange(20, chunks=5).persist()
    client.publish_dataset(arr=x)
    keys = [f.key for f in x.__dask_graph__().values()]
    del x
    y = client2.get_dataset("arr")
    np.testing.assert_array_equal(client2.compute(y).result(), np.arange(20))
    np.testing.assert_array_equal(client2.compute(y.sum()).result(), 190)
    client.unpublish_dataset("arr")
    del y
    poll(lambda: all(released(client, k) for k in keys))


def test_publish_unpersisted(client, client2):
    da = pytest.importorskip("dask.array")
    x = da.ones(6, chunks=3)
    client.publish_dataset(x, name="lazy")
    y = client2.get_dataset("lazy")
    assert client2.compute(y.sum()).result() == 6


def test_publish_flushes_pending_submits(client, client2):
    for i in range(20):
        f = client.submit(inc, i, key=f"flush-{i}")
        client.publish_dataset(f, name=f"f{i}")
        del f
    assert [client2.get_dataset(f"f{i}").result() for i in range(20)] == [i + 1 for i in range(20)]


def test_async_client(cluster, client):
    async def main():
        async with Client(cluster.scheduler_address, security=cluster.security, asynchronous=True,
                          set_as_default=False) as c:  # fmt: skip
            f = c.submit(inc, 41)
            await c.publish_dataset(f, name="af")
            await c.publish_dataset(av=[1])
            assert await c.list_datasets() == ("af", "av")
            g = await c.get_dataset("af")
            assert await g == 42
            assert await c.datasets["av"] == [1]
            assert await c.get_dataset("nope", default="d") == "d"
            with pytest.raises(KeyError, match="Dataset af already exists"):
                await c.publish_dataset(af=1)
            names = [n async for n in c.datasets]
            assert names == ["af", "av"]
            with pytest.raises(TypeError):
                c.datasets["x"] = 1
            with pytest.raises(TypeError):
                del c.datasets["af"]
            with pytest.raises(TypeError):
                len(c.datasets)
            with pytest.raises(TypeError):
                list(c.datasets)
            await c.unpublish_dataset(["af", "av"])
            assert await c.list_datasets() == ()

    run(main())
    with pytest.raises(TypeError):
        client.datasets.__aiter__()  # async for needs an asynchronous client
