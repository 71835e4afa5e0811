"""Dask collections on real worker processes (``LocalCluster(processes=True)``), compared
with dask's synchronous scheduler."""

from __future__ import annotations

import os

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask._task_spec import Alias, DataNode, Task, TaskRef
from task_functions import add, flaky, inc

from shoal import Future, futures_of, wait

pytestmark = pytest.mark.system


def pid(*_):
    return os.getpid()


def test_arrays(client):
    x = da.random.default_rng(5).random((60, 40), chunks=(15, 10))
    for e in (x.sum(), x.mean(axis=0), x.std(axis=1), x[:40] + x[:40].T, x[::4, [0, 3, 9]], x @ x.T, x.rechunk((30, 40))):
        np.testing.assert_allclose(e.compute(), e.compute(scheduler="sync"))


def test_dataframes(client):
    pdf = pd.DataFrame({"a": np.arange(90) % 5, "b": np.arange(90.0)[::-1]})
    ddf = dd.from_pandas(pdf, npartitions=3)
    g = ddf.groupby("a").agg({"b": ["sum", "mean", "max"]})
    pd.testing.assert_frame_equal(g.compute().sort_index(), g.compute(scheduler="sync").sort_index())
    s = ddf.set_index("b", shuffle_method="tasks")
    pd.testing.assert_frame_equal(s.compute(), pdf.set_index("b").sort_index())
    right = dd.from_pandas(pd.DataFrame({"a": range(5), "z": list("vwxyz")}), npartitions=2)
    m = ddf.merge(right, on="a", shuffle_method="tasks")
    assert len(m.compute()) == 90
    pd.testing.assert_series_equal(
        ddf.a.value_counts().compute().sort_index(), pdf.a.value_counts().sort_index()
    )


def test_bag_and_delayed(client):
    b = db.from_sequence(range(30), npartitions=3)
    assert b.map(inc).filter(lambda v: v % 2 == 0).sum().compute() == sum(v for v in range(1, 31) if v % 2 == 0)
    assert dict(b.map(lambda v: v % 3).frequencies().compute()) == {0: 10, 1: 10, 2: 10}
    pids = dask.compute(*[dask.delayed(pid)(i) for i in range(20)])
    assert os.getpid() not in pids
    assert set(pids) <= set(client.run(os.getpid).values())


def test_persist_release_and_get(client, poll):
    y = client.persist(da.arange(100, chunks=25) * 2)
    fs = futures_of(y)
    assert len(fs) == 4 and all(isinstance(f, Future) for f in fs)
    keys = [f.key for f in fs]
    wait(fs)
    assert y.sum().compute() == 2 * sum(range(100))
    del y, fs
    poll(lambda: not (set(keys) & set(client.who_has())))
    spec = {"a": DataNode("a", 5), "b": Task("b", add, TaskRef("a"), 1), "c": Alias("c", "b")}
    assert client.get(spec, ["c", ["a"]]) == [6, [5]]


def test_annotations(client, tmp_path):
    addr = sorted(client.nthreads())[1]
    with dask.annotate(workers=[addr]):
        ds = [dask.delayed(inc)(i) for i in range(6)]
    p = dask.persist(*ds)
    wait(futures_of(p))
    assert {w for ws in client.who_has(p).values() for w in ws} == {addr}
    with dask.annotate(retries=2):
        d = dask.delayed(flaky, pure=False)(str(tmp_path / "n"), 2)
    assert d.compute() == 2
