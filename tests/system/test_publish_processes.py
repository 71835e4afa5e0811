"""Published datasets with real worker processes: data outlives the publisher and is
readable from tasks (through the worker's client)."""

from __future__ import annotations

import pytest
from conftest import poll
from task_functions import inc

from shoal import Client, get_client

pytestmark = pytest.mark.system


def read_dataset(name):
    f = get_client().get_dataset(name)
    return f.result() + 1000


def test_publish_across_processes(cluster, client):
    da = pytest.importorskip("dask.array")
    pub = Client(cluster, set_as_default=False)
    f = pub.submit(inc, 1, key="proc-pub")
    x = da.arange(12, chunks=4).persist()
    pub.publish_dataset(f, name="f")
    pub.publish_dataset(arr=x)
    del f, x
    pub.close()
    assert client.list_datasets() == ("arr", "f")
    g = client.get_dataset("f")
    assert g.result() == 2
    assert client.submit(read_dataset, "f", pure=False).result() == 1002
    y = client.get_dataset("arr")
    assert client.compute(y.sum()).result() == 66
    client.unpublish_dataset(["f", "arr"])
    assert g.result() == 2  # still held by this client
    del g, y
    poll(lambda: "proc-pub" not in client.who_has(), timeout=10)
    assert client.list_datasets() == ()
