"""Dask collections (array, dataframe, bag, delayed) on in-process clusters (in-process
transport and TCP), compared with dask's synchronous scheduler; how ``dask.compute`` /
``.compute()`` / ``dask.persist`` find the client; ``Client.compute`` / ``persist`` / ``get``;
futures inside graphs; annotations; malformed graphs."""

from __future__ import annotations

import operator
import threading

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask._task_spec import Alias, DataNode, List, Task, TaskRef
from task_functions import add, flaky, inc

from shoal import Client, Future, LocalCluster, TimeoutError, futures_of, get_worker, wait


def double_block(b):
    return b * 2


def worker_address(*_):
    """Address of the worker running this task (raises outside a worker)."""
    return get_worker().address


def holders(client, collection) -> set[str]:
    return {w for ws in client.who_has(collection).values() for w in ws}


def keys_gone(client, keys):
    keys = set(keys)
    return lambda: not (keys & set(client.who_has()))


# ---------------------------------------------------------------------------- arrays


@pytest.fixture(scope="module")
def x_np():
    return np.random.default_rng(1).random((60, 40))


@pytest.fixture
def x(x_np):
    return da.from_array(x_np, chunks=(15, 10))


def test_array_reductions(client, x, x_np):
    exprs = [x.sum(), x.mean(axis=0), x.std(axis=1), x.max(axis=(0, 1)), x.min(axis=0), x.var()]
    for e in exprs:
        np.testing.assert_allclose(e.compute(), e.compute(scheduler="sync"))
    np.testing.assert_allclose(x.sum(axis=1).compute(), x_np.sum(axis=1))
    np.testing.assert_allclose(x.std().compute(), x_np.std())


def test_array_transpose_add_rechunk_slicing(client, x, x_np):
    sq = x[:40, :40]
    np.testing.assert_allclose((sq + sq.T).compute(), x_np[:40, :40] + x_np[:40, :40].T)
    r = x.rechunk((20, 40))
    assert r.chunks == ((20, 20, 20), (40,))
    np.testing.assert_array_equal(r.compute(), x_np)
    np.testing.assert_array_equal(x[::7, [1, 5, 33]].compute(), x_np[::7, [1, 5, 33]])
    np.testing.assert_array_equal(x[x_np[:, 0] > 0.5].compute(), x_np[x_np[:, 0] > 0.5])
    np.testing.assert_array_equal(x[5:50:3, -1].compute(), x_np[5:50:3, -1])


def test_array_random_matmul_map_blocks(client):
    y = da.random.default_rng(42).random((40, 30), chunks=(10, 10))
    z = da.random.RandomState(7).normal(size=(30, 20), chunks=(10, 10))
    for e in (y, z, y @ z, y.map_blocks(double_block), (y @ z).sum(axis=0)):
        np.testing.assert_allclose(e.compute(), e.compute(scheduler="sync"))


# ---------------------------------------------------------------------------- dataframes


@pytest.fixture(scope="module")
def pdf():
    n = 120
    return pd.DataFrame(
        {
            "a": np.arange(n) % 7,
            "b": np.random.default_rng(3).permutation(n).astype(float),
            "c": np.array(list("xyz"))[np.arange(n) % 3],
        }
    )


@pytest.fixture
def ddf(pdf):
    return dd.from_pandas(pdf, npartitions=4)


def test_dataframe_groupby_agg(client, ddf):
    g = ddf.groupby("a").agg({"b": ["sum", "mean", "max", "count"], "c": "min"})
    pd.testing.assert_frame_equal(g.compute().sort_index(), g.compute(scheduler="sync").sort_index())
    s = ddf.groupby("c").b.std()
    pd.testing.assert_series_equal(s.compute().sort_index(), s.compute(scheduler="sync").sort_index())


def test_dataframe_merge_both_partitioned(client, ddf, pdf):
    right_pd = pd.DataFrame({"a": np.arange(14) % 7, "z": np.arange(14) * 10})
    right = dd.from_pandas(right_pd, npartitions=3)
    m = ddf.merge(right, on="a", how="inner", shuffle_method="tasks")
    got = m.compute().sort_values(["b", "z"]).reset_index(drop=True)
    want = m.compute(scheduler="sync").sort_values(["b", "z"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == len(pdf.merge(right_pd, on="a"))
    assert m.npartitions > 1


def test_dataframe_set_index_shuffle_tasks(client, ddf, pdf):
    # a shoal client sends shuffles to its shuffle service (shoal/shuffle/); the task
    # shuffle is still there when asked for by name
    from shoal.shuffle.method import SERVICE

    assert dask.config.get("dataframe.shuffle.method") is SERVICE
    s = ddf.set_index("b", shuffle_method="tasks")
    got = s.compute()
    assert got.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(got, s.compute(scheduler="sync"))
    pd.testing.assert_frame_equal(got, pdf.set_index("b").sort_index(), check_dtype=False)


def test_dataframe_reductions_value_counts_map_partitions(client, ddf, pdf):
    assert ddf.b.sum().compute() == pdf.b.sum()
    assert ddf.b.mean().compute() == pytest.approx(pdf.b.mean())
    assert ddf.b.std().compute() == pytest.approx(pdf.b.std())
    assert len(ddf) == len(pdf)
    pd.testing.assert_series_equal(ddf[["a", "b"]].max().compute(), pdf[["a", "b"]].max())
    vc = ddf.c.value_counts()
    pd.testing.assert_series_equal(vc.compute().sort_index(), vc.compute(scheduler="sync").sort_index())
    assert vc.compute().to_dict() == pdf.c.value_counts().to_dict()
    mp = ddf.map_partitions(lambda p: p.assign(d=p.a * p.b))
    pd.testing.assert_frame_equal(mp.compute(), mp.compute(scheduler="sync"))


# ---------------------------------------------------------------------------- bags


def test_bag_operations(client):
    b = db.from_sequence(range(40), npartitions=5)
    assert b.map(inc).filter(lambda v: v % 3 == 0).compute() == [v for v in range(1, 41) if v % 3 == 0]
    assert b.fold(operator.add).compute() == sum(range(40))
    assert b.fold(operator.add, operator.add, initial=5).compute() == b.fold(
        operator.add, operator.add, initial=5
    ).compute(scheduler="sync")
    words = db.from_sequence(["a", "b", "a", "c", "a", "b"], npartitions=3)
    assert dict(words.frequencies().compute()) == {"a": 3, "b": 2, "c": 1}
    groups = dict(b.groupby(lambda v: v % 4, shuffle="tasks").compute())
    assert {k: sorted(v) for k, v in groups.items()} == {r: list(range(r, 40, 4)) for r in range(4)}
    assert b.map(inc).sum().compute() == sum(range(1, 41))


# ---------------------------------------------------------------------------- delayed


def test_delayed_chains_many_and_nested(client):
    d = dask.delayed(0)
    for _ in range(30):
        d = dask.delayed(inc)(d)
    assert d.compute() == 30
    many = [dask.delayed(inc)(i) for i in range(100)]
    assert dask.compute(*many) == tuple(range(1, 101))
    a, b = dask.delayed(inc)(1), dask.delayed(add)(2, 3)
    nested = {"a": [a, (b, 7)], "b": {"c": dask.delayed(add)(a, b)}, "d": "plain"}
    (out,) = dask.compute(nested)
    assert out == {"a": [2, (5, 7)], "b": {"c": 7}, "d": "plain"}
    assert dask.compute(a, [b, {"k": a}], 3) == (2, [5, {"k": 2}], 3)


# ---------------------------------------------------------------------------- routing


def test_default_client_routing(cluster):
    with dask.config.set(scheduler="sync"):
        with Client(cluster) as c:
            assert dask.base.get_scheduler() == c.get
            d = dask.delayed(worker_address)(1)
            workers = set(c.nthreads())
            assert d.compute() in workers
            assert dask.compute(d)[0] in workers
            (p,) = dask.persist(d)
            fs = futures_of(p)
            assert len(fs) == 1 and isinstance(fs[0], Future) and fs[0].client is c
            assert fs[0].key in c.who_has()
            assert p.compute() in workers
            # keys of an array computation appear on the cluster while persisted
            y = da.ones((10, 10), chunks=5).persist()
            assert set(c.who_has(y)) == {k for row in y.__dask_keys__() for k in row}
        assert dask.config.get("scheduler") == "sync"
        assert dask.base.get_scheduler() is dask.local.get_sync


def test_set_as_default_false_and_nested_clients(cluster):
    with Client(cluster) as outer:
        with Client(cluster, set_as_default=False) as quiet:
            assert dask.base.get_scheduler() == outer.get
            assert dask.base.get_scheduler() != quiet.get
            # explicit scheduler=client works for an unregistered client
            d = dask.delayed(worker_address)(2)
            assert d.compute(scheduler=quiet) in set(quiet.nthreads())
            assert dask.compute(d, scheduler=quiet)[0] in set(quiet.nthreads())
        assert dask.base.get_scheduler() == outer.get
        with Client(cluster) as inner:
            assert dask.base.get_scheduler() == inner.get
        assert dask.base.get_scheduler() == outer.get
    assert dask.config.get("scheduler", None) is None


# ---------------------------------------------------------------------------- Client.compute / persist / get


def test_client_compute(client, x, x_np):
    f = client.compute(x.sum())
    assert isinstance(f, Future)
    assert f.result() == pytest.approx(x_np.sum())
    fs = client.compute([x.mean(axis=0), dask.delayed(inc)(1)])
    assert isinstance(fs, list) and all(isinstance(g, Future) for g in fs)
    np.testing.assert_allclose(fs[0].result(), x_np.mean(axis=0))
    assert fs[1].result() == 2
    arr = client.compute(x)  # one future holding the concatenated array
    np.testing.assert_array_equal(arr.result(), x_np)
    assert client.compute([dask.delayed(inc)(5), x.max()], sync=True) == [6, x_np.max()]
    assert client.compute(dask.delayed(inc)(5), sync=True) == 6
    assert client.compute(1) == 1
    one, fut = client.compute((1, dask.delayed(inc)(1)))
    assert one == 1 and fut.result() == 2
    # builtin containers are traversed
    assert client.compute([[dask.delayed(inc)(1), 10]], sync=True) == [[2, 10]]


def test_client_compute_dataframe(client, ddf, pdf):
    f = client.compute(ddf[ddf.a > 2])
    pd.testing.assert_frame_equal(f.result(), pdf[pdf.a > 2], check_dtype=False)


def test_client_persist_array_and_release(client, poll, x, x_np):
    y = (x + 1) * 2
    yy = client.persist(y)
    assert type(yy) is type(y)
    assert yy.__dask_keys__() == y.__dask_keys__()
    graph = dict(yy.__dask_graph__())
    keys = [k for row in yy.__dask_keys__() for k in row]
    assert all(isinstance(graph[k], Future) for k in keys)
    fs = futures_of(yy)
    assert {f.key for f in fs} == set(keys)
    wait(fs)
    assert set(keys) <= set(client.who_has())
    np.testing.assert_allclose(yy.compute(), (x_np + 1) * 2)
    [zz] = client.persist([y.sum()])
    assert zz.compute() == pytest.approx(((x_np + 1) * 2).sum())
    del yy, fs, graph, zz
    poll(keys_gone(client, keys))
    poll(lambda: not client.who_has())


def test_dask_persist_release(client, poll):
    ds = [dask.delayed(inc)(i) for i in range(5)]
    persisted = dask.persist(*ds)
    assert len(persisted) == 5
    keys = [f.key for f in futures_of(persisted)]
    assert len(keys) == 5
    assert dask.compute(*persisted) == (1, 2, 3, 4, 5)
    wait(futures_of(persisted))
    assert set(keys) <= set(client.who_has())
    del persisted
    poll(keys_gone(client, keys))


def test_dataframe_persist_via_method(client, ddf, pdf):
    e = (ddf[ddf.b > 3].b + 1) * 2
    p = e.persist()
    assert futures_of(p)
    pd.testing.assert_series_equal(p.compute(), (pdf[pdf.b > 3].b + 1) * 2)


def test_client_persist_unoptimized_dataframe(client, ddf, pdf):
    e = (ddf[ddf.b > 3].b + 1) * 2
    p = client.persist(e)
    assert futures_of(p)
    pd.testing.assert_series_equal(p.compute(), (pdf[pdf.b > 3].b + 1) * 2)


def test_client_get_graphs(client):
    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    assert client.get(dsk, "z") == 3
    assert client.get(dsk, ["x", ["y"]]) == [1, [2]]
    assert client.get(dsk, [["x", "y"], ["z"]]) == [[1, 2], [3]]
    assert client.get({}, []) == []
    spec = {
        "a": DataNode("a", 5),
        "b": Task("b", add, TaskRef("a"), 1),
        "c": Alias("c", "b"),
        "d": Task("d", sum, List(TaskRef("a"), TaskRef("b"), 100)),
    }
    assert client.get(spec, "c") == 6
    assert client.get(spec, ["d", ["c", "a"]]) == [111, [6, 5]]
    tup = {("t", 0): (inc, 1), ("t", 1): (inc, ("t", 0))}
    assert client.get(tup, [("t", 1)]) == [3]
    futs = client.get(dsk, ["x", ["z"]], sync=False)
    assert isinstance(futs, list) and isinstance(futs[1], list)
    assert isinstance(futs[0], Future) and futs[1][0].key == "z"
    assert client.gather(futs) == [1, [3]]


def test_dask_compute_kwargs_reach_get(client, tmp_path):
    d = dask.delayed(flaky, pure=False)(str(tmp_path / "n"), 2)
    assert dask.compute(d, retries=2) == (2,)


# ---------------------------------------------------------------------------- futures inside graphs


def test_futures_inside_graphs(client):
    f = client.submit(inc, 10)
    assert dask.delayed(inc)(f).compute() == 12
    assert dask.delayed(add)(f, dask.delayed(inc)(f)).compute() == 23
    parts = [client.submit(np.full, 3, i, pure=False) for i in range(4)]
    arr = da.concatenate([da.from_delayed(dask.delayed(p), shape=(3,), dtype=int) for p in parts])
    np.testing.assert_array_equal(arr.compute(), np.repeat(np.arange(4), 3))
    assert arr.sum().compute() == 3 * 6
    assert client.get({"a": (inc, f)}, "a") == 12


# ---------------------------------------------------------------------------- annotations


def test_annotate_workers(client):
    addrs = sorted(client.nthreads())
    for j, addr in enumerate(addrs):
        with dask.annotate(workers=[addr]):
            ds = [dask.delayed(inc)(i + 100 * j) for i in range(8)]
            total = dask.delayed(sum)(ds)
        p = dask.persist(ds, total)
        wait(futures_of(p))
        assert len(futures_of(p)) == 9
        assert holders(client, p) == {addr}
        assert p[1].compute() == sum(range(100 * j + 1, 100 * j + 9))
    # arrays: dask's graph optimization drops layer annotations, so persist unoptimized
    with dask.annotate(workers=addrs[1]):
        y = da.ones((20, 20), chunks=5) + 1
    yy = client.persist(y, optimize_graph=False)
    wait(yy)
    assert holders(client, yy) == {addrs[1]}


def test_annotate_retries_priority(client, tmp_path):
    with dask.annotate(retries=2):
        d = dask.delayed(flaky, pure=False)(str(tmp_path / "ok"), 2)
    assert d.compute() == 2
    with dask.annotate(retries=1):
        e = dask.delayed(flaky, pure=False)(str(tmp_path / "bad"), 2)
    with pytest.raises(ValueError, match="attempt 1"):
        e.compute()
    with dask.annotate(priority=10):
        hi = [dask.delayed(inc)(i) for i in range(3)]
    with dask.annotate(priority=-5):
        lo = dask.delayed(sum)(hi)
    assert lo.compute() == 6


@pytest.fixture(scope="module")
def gpu_cluster(cluster_kwargs):
    with LocalCluster(**cluster_kwargs, resources={"GPU": 1}) as cl:
        yield cl


def test_annotate_resources(gpu_cluster):
    with Client(gpu_cluster) as c:
        with dask.annotate(resources={"GPU": 1}):
            ok = [dask.delayed(inc)(i) for i in range(4)]
        assert dask.compute(*ok) == (1, 2, 3, 4)
        with dask.annotate(resources={"GPU": 2}):  # more than any worker has
            never = dask.delayed(inc)(-1)
        f = c.compute(never)
        with pytest.raises(TimeoutError):
            f.result(timeout=0.3)
        assert f.status == "pending"


# ---------------------------------------------------------------------------- bad input


def test_missing_dependency(client):
    with pytest.raises(Exception, match="zz") as info:
        client.get({"a": Task("a", inc, TaskRef("zz"))}, "a")
    assert "'a'" in str(info.value)
    assert client.get({"ok-1": (inc, 1)}, "ok-1") == 2


def test_graph_submission_leaves_the_collector_as_it_found_it(client):
    import gc

    assert gc.isenabled()
    assert client.get({"gc-1": (inc, 1)}, "gc-1") == 2
    with pytest.raises(Exception, match="zz"):
        client.get({"gc-2": Task("gc-2", inc, TaskRef("zz"))}, "gc-2")
    assert gc.isenabled()  # paused while the graph was built, resumed even on failure
    gc.disable()
    try:
        assert client.get({"gc-3": (inc, 2)}, "gc-3") == 3
        assert not gc.isenabled()  # a user who turned it off keeps it off
    finally:
        gc.enable()


def test_cycle_rejected(client):
    with pytest.raises(Exception, match="(?i)cycle"):
        fut = client.get({"cyc-a": (inc, "cyc-b"), "cyc-b": (inc, "cyc-a")}, "cyc-a", sync=False)
        fut.result(timeout=1)


def test_cluster_serves_after_cycle(client):
    with pytest.raises(RuntimeError, match="cyc2-a"):
        client.get({"cyc2-a": (inc, "cyc2-b"), "cyc2-b": (inc, "cyc2-a")}, "cyc2-a", sync=False)
    assert client.get({"after-cycle": (inc, 1)}, "after-cycle") == 2
    assert dask.delayed(inc)(41).compute() == 42


def test_unpicklable_task(client):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="bad-task") as info:
        client.get({"good": (inc, 1), "bad-task": (add, "good", lock)}, "bad-task")
    assert "pickle" in str(info.value) or "serializ" in str(info.value)
    d = dask.delayed(add)(1, lock, dask_key_name="bad-delayed")
    with pytest.raises(TypeError, match="bad-delayed"):
        d.compute()
    assert client.get({"good2": (inc, 1)}, "good2") == 2
    assert dask.delayed(inc)(1).compute() == 2


def test_cancel_persisted_collection(client, poll):
    y = client.persist(da.arange(40, chunks=10) * 3)
    keys = [k for k in y.__dask_keys__()]
    wait(y)
    assert set(keys) <= set(client.who_has())
    client.cancel(y)
    assert all(f.status == "cancelled" for f in futures_of(y))
    poll(keys_gone(client, keys))
    assert client.compute((da.arange(40, chunks=10) * 3).sum(), sync=True) == 3 * sum(range(40))
