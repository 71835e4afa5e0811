"""The shuffle service end to end on an in-process cluster: dask's dataframe shuffles go
through it without the user asking and give what dask's synchronous scheduler gives."""

from __future__ import annotations

import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from shuffle_functions import slow_partition

from shoal import Client, LocalCluster, wait
from shoal.shuffle.method import SERVICE


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with Client(cluster) as c:
        yield c


def service(cluster):
    return cluster.scheduler.shuffle


def worker_buffers(cluster):
    return [w.extensions["shuffle"].buffers for w in cluster.workers.values()]


def no_shuffle_files(cluster):
    return not any(
        name.startswith("shuffle-") for w in cluster.workers.values() for name in os.listdir(w.local_directory)
    )


@pytest.fixture
def pdf():
    rng = np.random.default_rng(42)
    n = 3000
    return pd.DataFrame(
        {
            "k": rng.integers(0, 200, n),
            "v": rng.random(n),
            "s": rng.choice(["a", "bb", "ccc", None], n),
            "c": pd.Categorical(rng.choice(["x", "y", "z"], n)),
        }
    )


def same(got, want, by=None):
    by = by or list(want.columns)
    got = got.sort_values(by).reset_index(drop=True)
    want = want.sort_values(by).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_client_sets_the_service_method(client):
    assert dask.config.get("dataframe.shuffle.method") is SERVICE


def test_shuffles_equal_the_synchronous_scheduler(cluster, client, pdf, poll):
    ddf = dd.from_pandas(pdf, npartitions=7)
    before = service(cluster).finished
    ops = {
        "shuffle": lambda d: d.shuffle("k"),
        "shuffle-npartitions": lambda d: d.shuffle("k", npartitions=3),
        "set_index": lambda d: d.set_index("v"),
        "sort_values": lambda d: d.sort_values(["k", "v"]),
        "merge": lambda d: d.merge(d[["k", "v"]].rename(columns={"v": "w"}), on="k"),
        "merge-left": lambda d: d.merge(d[d.k < 50][["k", "v"]].rename(columns={"v": "w"}), on="k", how="left"),
        "merge-outer": lambda d: d[d.k > 20].merge(d[d.k < 50][["k"]].assign(z=1), on="k", how="outer"),
        "drop_duplicates": lambda d: d.drop_duplicates(subset=["k"], split_out=3),
        "groupby": lambda d: d.groupby("k").v.sum(split_out=3).to_frame(),
    }
    for name, op in ops.items():
        (got,) = client.persist([op(ddf)])  # persist: compute may merge a sort into one partition
        want = op(ddf).compute(scheduler="sync")
        if name in ("set_index", "sort_values"):
            pd.testing.assert_frame_equal(got.compute(), want)  # order matters
        else:
            same(got.compute().reset_index(), want.reset_index())
    assert service(cluster).finished >= before + len(ops)
    poll(lambda: not any(worker_buffers(cluster)))
    poll(lambda: no_shuffle_files(cluster))
    exts = [w.extensions["shuffle"] for w in cluster.workers.values()]
    poll(lambda: all(not e.outgoing and e.in_flight == 0 for e in exts))  # nothing left on its way
    assert not service(cluster).book.runs and cluster.scheduler.shuffle.watch not in cluster.scheduler.state.observers


def test_only_some_outputs_and_two_at_once(cluster, client, pdf):
    ddf = dd.from_pandas(pdf, npartitions=6)
    part = ddf.shuffle("k").partitions[:3]
    same(part.compute(), part.compute(scheduler="sync"))
    a = ddf.shuffle("k")
    b = ddf.shuffle("v", npartitions=4)
    fa, fb = client.compute([a, b])
    same(fa.result(), a.compute(scheduler="sync"))
    same(fb.result(), b.compute(scheduler="sync"))


def test_a_worker_asks_for_a_run_once_and_again_for_the_next(cluster, client, pdf, poll):
    ddf = dd.from_pandas(pdf, npartitions=12).shuffle("k")
    want = ddf.compute(scheduler="sync")
    for _ in range(2):  # the same shuffle twice: two runs, one after the other
        before, runs = service(cluster).asked, service(cluster).finished
        same(ddf.compute(), want)
        assert 1 <= service(cluster).asked - before <= len(cluster.workers)  # not once per transfer
        poll(lambda: service(cluster).finished == runs + 1)
        poll(lambda: all(not w.extensions["shuffle"].runs for w in cluster.workers.values()))


def test_explicit_task_shuffle_is_dasks(cluster, client, pdf):
    ddf = dd.from_pandas(pdf, npartitions=5)
    before = service(cluster).finished
    got = ddf.shuffle("k", shuffle_method="tasks").compute()
    same(got, ddf.compute(scheduler="sync"))
    assert service(cluster).finished == before


def test_bad_input_same_as_dask(client, pdf):
    ddf = dd.from_pandas(pdf, npartitions=4)
    with pytest.raises(KeyError):
        ddf.shuffle("nope").compute()
    # empty partitions, all rows to one partition
    empty = dd.from_pandas(pdf.iloc[:0], npartitions=1)
    assert len(empty.shuffle("k").compute()) == 0
    sparse = ddf[ddf.k < 3]
    same(sparse.shuffle("k").compute(), sparse.compute(scheduler="sync"))
    one = ddf.assign(k=0)
    same(one.shuffle("k").compute(), one.compute(scheduler="sync"))
    # categorical and string keys, several keys, the index
    for on in ("c", "s", ["k", "c"]):
        same(ddf.shuffle(on).compute(), ddf.compute(scheduler="sync"))
    same(ddf.set_index("k").shuffle("k").compute().reset_index(), ddf.compute(scheduler="sync"))
    # mixed-type keys hash as dask hashes them; unhashable keys fail as they fail in dask
    mixed = dd.from_pandas(pd.DataFrame({"k": [1, "a", 2.5, "b"] * 10, "v": range(40)}), npartitions=3)
    same(mixed.shuffle("k").compute(), mixed.compute(scheduler="sync"), by=["v"])
    bad = dd.from_pandas(pd.DataFrame({"k": [[1], [2]] * 5, "v": range(10)}), npartitions=2)
    assert outcome(lambda: bad.shuffle("k").compute()) == outcome(lambda: bad.shuffle("k").compute(scheduler="sync"))


def outcome(f):
    """("ok", rows in order of v) or ("error", type, message)."""
    try:
        df = f()
    except Exception as e:
        return ("error", type(e), str(e))
    return ("ok", df.sort_values("v").astype(str).values.tolist())


def test_skew_spills_and_cleans_up(cluster, client, pdf, poll):
    big = pd.concat([pdf] * 20, ignore_index=True).assign(k=7)
    ddf = dd.from_pandas(big, npartitions=10)
    exts = [w.extensions["shuffle"] for w in cluster.workers.values()]
    old = [e._budget for e in exts]
    spilled_before = sum(e.spilled_bytes for e in exts)
    for e in exts:
        e._budget = 64 * 1024  # a tiny buffer: the receiver of everything must spill
    try:
        (out,) = client.persist([ddf.shuffle("k")])
        wait(out)
        assert sum(e.spilled_bytes for e in exts) > spilled_before
        same(out.compute(), ddf.compute(scheduler="sync"))
    finally:
        for e, b in zip(exts, old):
            e._budget = b
    del out
    poll(lambda: not any(worker_buffers(cluster)))
    poll(lambda: no_shuffle_files(cluster))


def test_cancel_frees_buffers_and_files(cluster, client, pdf, poll):
    ddf = dd.from_pandas(pd.concat([pdf] * 5, ignore_index=True), npartitions=40)
    slow = ddf.map_partitions(slow_partition, 0.05, meta=ddf._meta)
    (out,) = client.persist([slow.shuffle("k")])
    poll(lambda: any(worker_buffers(cluster)), timeout=30)
    client.cancel(out)
    del out
    poll(lambda: not service(cluster).book.runs, timeout=10)
    poll(lambda: not any(worker_buffers(cluster)), timeout=10)
    poll(lambda: no_shuffle_files(cluster), timeout=10)



def test_explicit_p2p_from_distributed_code_goes_through_the_service(cluster, client, pdf):
    pytest.importorskip("distributed")  # dask's p2p path imports it before anything runs
    ddf = dd.from_pandas(pdf[["k", "v"]], npartitions=6)
    before = service(cluster).finished
    same(ddf.shuffle("k", shuffle_method="p2p").compute(), ddf.compute(scheduler="sync"))
    (si,) = client.persist([ddf.set_index("v", shuffle_method="p2p")])
    pd.testing.assert_frame_equal(si.compute(), ddf.set_index("v").compute(scheduler="sync"))
    assert service(cluster).finished >= before + 2
