"""dask.array rechunks that need all-to-all movement go through the shuffle service
without the user asking, and give what dask's synchronous scheduler gives."""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import pytest

from shoal import Client, LocalCluster, wait


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with Client(cluster) as c:
        yield c


def finished(cluster):
    return cluster.scheduler.shuffle.finished


def exts(cluster):
    return [w.extensions["shuffle"] for w in cluster.workers.values()]


def clean(cluster):
    return (
        not cluster.scheduler.shuffle.book.runs
        and not any(e.buffers or e.outgoing or e.in_flight for e in exts(cluster))
        and not any(n.startswith("shuffle-") for w in cluster.workers.values() for n in os.listdir(w.local_directory))
    )


@pytest.fixture
def x():
    return da.random.default_rng(5).random((120, 90), chunks=(120, 9))


def test_rechunks_equal_the_synchronous_scheduler(cluster, client, x, poll):
    cube = da.random.default_rng(1).integers(0, 100, (12, 4, 10), chunks=(12, 4, 1))
    cases = {
        "columns-to-rows": x.rechunk((12, 90)),
        "uneven": x.rechunk(((13,) * 9 + (3,), (90,))),
        "int-3d": cube.rechunk((1, 4, 10)),
        "part": x.rechunk((12, 90))[:30],
        "block": x.rechunk((12, 90)).blocks[3],
        "reduced": (x.rechunk((12, 90)) + 1).sum(axis=1),
    }
    for name, y in cases.items():
        before = finished(cluster)
        got = y.compute()
        np.testing.assert_array_equal(got, y.compute(scheduler="sync"), err_msg=name)
        assert got.dtype == y.dtype
        assert finished(cluster) == before + 1, name  # it went through the service
    (p,) = client.persist([x.rechunk((12, 90))])
    np.testing.assert_array_equal(p.compute(), x.compute(scheduler="sync"))
    poll(lambda: clean(cluster))


def test_rechunks_that_are_not_all_to_all_or_asked_as_tasks_are_dasks(cluster, client, x):
    before = finished(cluster)
    y = x.rechunk((60, 9))
    np.testing.assert_array_equal(y.compute(), y.compute(scheduler="sync"))
    with dask.config.set({"array.rechunk.method": "tasks"}):
        z = x.rechunk((12, 90))
        np.testing.assert_array_equal(z.compute(), z.compute(scheduler="sync"))
    assert finished(cluster) == before


def test_rechunk_bigger_than_the_buffer_spills(cluster, client, x, poll):
    old = [e._budget for e in exts(cluster)]
    spilled = sum(e.spilled_bytes for e in exts(cluster))
    for e in exts(cluster):
        e._budget = 16 * 1024
    try:
        y = x.rechunk((12, 90))
        (out,) = client.persist([y])
        wait(out)
        assert sum(e.spilled_bytes for e in exts(cluster)) > spilled
        np.testing.assert_array_equal(out.compute(), y.compute(scheduler="sync"))
    finally:
        for e, b in zip(exts(cluster), old):
            e._budget = b
    del out
    poll(lambda: clean(cluster))
    if os.uname().sysname == "Linux":  # glibc: freed pieces' pages went back to the OS
        assert sum(e.trims for e in exts(cluster)) > 0


def test_two_rechunks_at_once_and_a_shuffle_beside(cluster, client, x):
    a = x.rechunk((12, 90))
    b = (x * 2).rechunk((30, 90))
    fa, fb = client.compute([a, b])
    np.testing.assert_array_equal(fa.result(), a.compute(scheduler="sync"))
    np.testing.assert_array_equal(fb.result(), b.compute(scheduler="sync"))


def test_explicit_p2p_from_distributed_code_goes_through_the_service(cluster, client, x):
    pytest.importorskip("distributed")  # dask's p2p path imports it when the graph is built
    before = finished(cluster)
    y = x.rechunk((12, 90), method="p2p")
    np.testing.assert_array_equal(y.compute(), x.compute(scheduler="sync"))
    part = y[:24]
    np.testing.assert_array_equal(part.compute(), x[:24].compute(scheduler="sync"))
    with dask.config.set({"array.rechunk.method": "p2p"}):  # the same, chosen by config
        z = (x + 1).rechunk((12, 90))
        np.testing.assert_array_equal(z.compute(), (x + 1).compute(scheduler="sync"))
    assert finished(cluster) == before + 3
