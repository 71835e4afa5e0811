"""`Client.normalize_collection`: graph entries held as futures are replaced by them."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from dask import delayed
from task_functions import inc

from shoal import Future


def test_normalize_delayed(client):
    x = delayed(inc)(1)
    y = delayed(inc)(x)
    z = delayed(inc)(y)
    assert client.normalize_collection(z) is z  # nothing held yet
    yy = client.persist(y)
    zz = client.normalize_collection(z)
    assert isinstance(zz.dask[y.key], Future) and zz.dask[y.key].key == y.key
    assert x.key not in zz.dask  # culled: y's inputs are not needed any more
    assert len(zz.dask) < len(dict(z.dask))
    assert zz.key == z.key
    assert client.compute(zz).result() == 4
    assert dask.compute(zz)[0] == 4
    del yy


def test_normalize_array(client):
    x = da.arange(20, chunks=5) + 1
    xx = client.persist(x)
    total = x.sum()
    normalized = client.normalize_collection(total)
    graph = dict(normalized.__dask_graph__())
    held = [k for k in dict(x.__dask_graph__()) if isinstance(graph.get(k), Future)]
    assert sorted(held) == sorted(k for ks in [x.__dask_keys__()] for k in ks)
    assert client.compute(normalized).result() == np.arange(1, 21).sum()
    del xx
