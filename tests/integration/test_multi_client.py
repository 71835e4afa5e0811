"""Several clients sharing one cluster."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from task_functions import inc

from shoal import CancelledError, Client, LocalCluster
from shoal.comm import CommClosedError, connect

GATES: dict[str, threading.Event] = {}


def gated(x, gate):
    if not GATES[gate].wait(10):
        raise RuntimeError(f"gate {gate} never opened")
    return x


@pytest.fixture
def gate():
    name = f"gate-{uuid.uuid4().hex}"
    GATES[name] = threading.Event()
    yield name
    GATES.pop(name).set()


def test_closing_client_releases_only_its_keys(cluster, poll):
    with Client(cluster, set_as_default=False) as b:
        a = Client(cluster, set_as_default=False)
        shared_a = a.submit(inc, 41)
        shared_b = b.submit(inc, 41)
        assert shared_a.key == shared_b.key
        only_a = a.submit(inc, 1, pure=False)
        assert only_a.result() == 2
        assert shared_a.result() == 42
        only_key = only_a.key
        assert only_key in b.who_has()
        a.close()
        assert a.status == "closed"
        # a's private key is forgotten, the shared key lives on for b
        poll(lambda: only_key not in b.who_has())
        assert shared_b.status == "finished"
        assert shared_b.result() == 42
        assert shared_b.key in b.who_has()
        assert b.submit(inc, shared_b).result() == 43


def test_cancel_does_not_affect_other_client(cluster, gate):
    with Client(cluster, set_as_default=False) as a, Client(cluster, set_as_default=False) as b:
        fa = a.submit(gated, 5, gate)
        fb = b.submit(gated, 5, gate)
        assert fa.key == fb.key
        fa.cancel()
        assert fa.cancelled()
        with pytest.raises(CancelledError):
            fa.result()
        # let the scheduler handle the cancellation before the task may finish
        a.who_has()
        b.who_has()
        assert not fb.cancelled()
        GATES[gate].set()
        assert fb.result(timeout=5) == 5
        assert fb.status == "finished"


def test_gather_other_clients_future(cluster):
    with Client(cluster, set_as_default=False) as a, Client(cluster, set_as_default=False) as b:
        fa = a.submit(inc, 1)
        with pytest.raises(ValueError, match="Cannot gather Futures created by another client"):
            b.gather([fa])
        assert a.gather([fa]) == [2]


def test_failed_one_way_call_is_logged_not_lost(client, caplog, poll):
    import logging

    with caplog.at_level(logging.WARNING, logger="shoal.rpc"):
        client._call_in_loop(client.scheduler_comm.notify, "no-such-operation")
        poll(lambda: "one-way call" in caplog.text and "no-such-operation" in caplog.text)
    assert client.submit(sum, [1, 2]).result() == 3  # the connection is fine


def test_client_of_a_cluster_reaches_its_scheduler_in_process():
    kwargs = dict(n_workers=1, threads_per_worker=1, processes=False, scheduler_port=0, protocol="tcp://")
    with LocalCluster(**kwargs) as cluster:
        local = cluster.scheduler.local_address
        assert local.startswith("inproc://") and cluster.scheduler_address.startswith("tcp://")
        with (
            Client(cluster) as near,
            Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as far,
        ):
            assert near.scheduler_comm.comm.peer_address == local  # objects, no encoding
            assert far.scheduler_comm.comm.peer_address.startswith("tcp://")
            assert near.scheduler.address == cluster.scheduler_address  # what users see
            assert f"'{cluster.scheduler_address}'" in repr(near)
            a, b = near.submit(inc, 1), far.submit(inc, 1)
            assert a.key == b.key and a.result() == b.result() == 2
            assert far.gather(far.map(inc, range(3))) == near.gather(near.map(inc, range(3))) == [1, 2, 3]
    with pytest.raises((OSError, CommClosedError)):  # stopped with the scheduler
        asyncio.run(connect(local, timeout=1))
