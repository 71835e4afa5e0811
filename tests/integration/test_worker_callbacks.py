"""`Client.register_worker_callbacks`: setups run on every current and future worker."""

from __future__ import annotations

import pytest

from shoal import Client, LocalCluster, get_worker


def mark(dask_worker, value="set"):
    dask_worker.test_marker = getattr(dask_worker, "test_marker", ()) + (value,)


def no_args_setup():
    import os

    os.environ.setdefault("SHOAL_TEST_CALLBACK", "1")


def read_marker(dask_worker):
    return getattr(dask_worker, "test_marker", None)


def marker_in_task(_):
    w = get_worker()
    return w.address, getattr(w, "test_marker", None)


def failing_setup():
    raise ZeroDivisionError("setup failed")


def test_register_worker_callbacks_current_and_future_workers():
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        [first] = c.nthreads()
        assert c.register_worker_callbacks(mark) == {first: {"status": "OK"}}
        assert c.register_worker_callbacks(no_args_setup) == {first: {"status": "OK"}}
        assert c.run(read_marker) == {first: ("set",)}
        cluster.scale(3)
        assert len(c.nthreads()) == 3
        assert c.run(read_marker) == dict.fromkeys(c.nthreads(), ("set",))  # each ran it once
        # tasks on a joining worker see the setup done: it ran before the worker got work
        seen = c.gather(c.map(marker_in_task, range(12), pure=False))
        assert {m for _, m in seen} == {("set",)}

        with pytest.raises(ZeroDivisionError, match="setup failed"):
            c.register_worker_callbacks(failing_setup)
        cluster.scale(4)  # a failing setup is logged; the worker still joins
        assert len(c.nthreads()) == 4
        with pytest.raises(TypeError, match="callable"):
            c.register_worker_callbacks(None)
