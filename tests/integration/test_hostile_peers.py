"""Authenticated peers that send what the protocol does not allow, or vanish: each bad
message costs only its own connection (closed, one log line), changes no state, and
blocks nobody; every connection's end removes what it registered (issue 18)."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest
from task_functions import inc

from shoal import Client, LocalCluster
from shoal.comm import connect
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.versions import get_versions


@pytest.fixture(scope="module")
def hcluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://") as cl:
        yield cl


@pytest.fixture
def hclient(hcluster):
    with Client(hcluster.scheduler_address, security=hcluster.security) as c:
        yield c


def _run(client, coro):
    return client.sync(lambda: coro)


async def _raw(cluster, *wires, role_info=None, wait_closed: float = 5.0):
    """Connect like a peer, send `wires` (wire tuples, in one packet) and return whether
    the scheduler closed the connection within `wait_closed` seconds."""
    comm = await connect(cluster.scheduler_address, secret=cluster.security.secret, info=role_info or {"role": "client"})
    try:
        comm.send_many(wires)
        try:
            await asyncio.wait_for(comm.read(), wait_closed)
        except asyncio.TimeoutError:
            return False
        except Exception:
            return True
        return comm.closed
    finally:
        comm.abort()


def _validate(client):
    client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())


def _task(key, deps=()):
    return (key, -1, dumps((inc, 1)), tuple(deps), (0,), None)


@pytest.mark.parametrize(
    "key",
    [float("nan"), {"a": 1}, None, (1, float("nan")), ("x", None), ("x", ("y", float("nan"))), functools.reduce(lambda k, _: (k,), range(20), "d")],
    ids=["nan", "dict", "none", "tuple-nan", "tuple-none", "nested-nan", "too-deep"],
)
def test_a_bad_task_key_closes_its_connection_and_changes_nothing(hclient, hcluster, key):
    n_before = len(hcluster.scheduler.state.tasks)
    register = m.RegisterClient("bad-client", get_versions()).to_wire()
    graph = m.UpdateGraph((_task(key),), (), (key,)).to_wire()
    assert _run(hclient, _raw(hcluster, register, graph))
    _validate(hclient)
    assert len(hcluster.scheduler.state.tasks) == n_before
    assert "bad-client" not in hcluster.scheduler.state.clients
    assert hclient.submit(inc, 41).result(timeout=10) == 42


def test_a_worker_registering_with_bad_fields_is_refused_without_blocking_anyone(hclient, hcluster):
    reg = m.RegisterWorker("tcp://127.0.0.1:1", "bad", "x", 1, {}, 1, "/tmp", {}, None).to_wire()

    async def register_and_stay():
        comm = await connect(hcluster.scheduler_address, secret=hcluster.security.secret, info={"role": "worker"})
        comm.send(reg)
        try:
            await asyncio.wait_for(comm.read(), 5)
        except Exception:
            pass
        closed = comm.closed
        # while this connection would stay open, the cluster must keep working
        return comm, closed

    comm, closed = _run(hclient, register_and_stay())
    try:
        assert closed
        assert "tcp://127.0.0.1:1" not in hcluster.scheduler.state.workers
        assert hclient.submit(inc, 1).result(timeout=10) == 2
        _validate(hclient)
    finally:
        comm.abort()


@pytest.mark.parametrize(
    "wire",
    [
        ("no-such-op", 1),
        ("update-graph",),
        ("update-graph", "tasks", (), ()),
        ("release-keys", 5),
        ("cancel-keys", ("k",), "yes", None, None),
        ("task-finished", "k", 1, -5, "int", 0.0, 1.0, None),
        ("request", "x", "who_has", {}),
        ("request", 1, "who_has", {"keys": [float("nan")]}),
        ("request", 1, "who_has", {"no_such_argument": 1}),
        ("request", 1, "heartbeat", {}),
        ("request", 1, "worker_exit_reason", {"worker": "x", "reason": "y"}),
        ("desire-keys", ("k",), "someone-else"),
        ("register-client", "again", {}),
        17,
        None,
    ],
)
def test_malformed_messages_cost_one_connection(hclient, hcluster, wire):
    register = m.RegisterClient("bad-client-2", get_versions()).to_wire()
    assert _run(hclient, _raw(hcluster, register, wire))
    _validate(hclient)
    assert "bad-client-2" not in hcluster.scheduler.state.clients
    assert hclient.submit(inc, 2).result(timeout=10) == 3


def test_an_unknown_operation_is_answered_with_an_error(hclient, hcluster):
    async def call():
        comm = await connect(hcluster.scheduler_address, secret=hcluster.security.secret, info={"role": "client"})
        try:
            comm.send(m.RegisterClient("asks-nonsense", get_versions()).to_wire())
            comm.send(m.Request(7, "no_such_operation", {}).to_wire())
            return await asyncio.wait_for(comm.read(), 5)
        finally:
            comm.abort()

    [reply] = _run(hclient, call())
    assert reply[0] == "reply" and reply[1] == 7 and reply[2] is False
    _validate(hclient)


def test_a_client_may_not_send_worker_messages(hclient, hcluster):
    register = m.RegisterClient("bad-client-3", get_versions()).to_wire()
    finished = m.TaskFinished("k", 1, 8, "int", 0.0, 1.0, None).to_wire()
    assert _run(hclient, _raw(hcluster, register, finished))
    assert "bad-client-3" not in hcluster.scheduler.state.clients
    _validate(hclient)


def test_a_worker_may_not_send_client_messages(hclient, hcluster):
    reg = m.RegisterWorker("tcp://127.0.0.1:2", "w", 1, 2**30, {}, 1, "/tmp", {}, None).to_wire()
    graph = m.UpdateGraph((_task("from-a-worker"),), (), ("from-a-worker",)).to_wire()
    assert _run(hclient, _raw(hcluster, reg, graph, role_info={"role": "worker"}))
    assert "from-a-worker" not in hcluster.scheduler.state.tasks
    assert "tcp://127.0.0.1:2" not in hcluster.scheduler.state.workers
    _validate(hclient)


def test_ghost_clients_are_removed_with_what_they_held(hclient, hcluster, poll):
    before = set(hcluster.scheduler.state.clients)

    async def ghosts(n):
        for i in range(n):
            comm = await connect(hcluster.scheduler_address, secret=hcluster.security.secret, info={"role": "client"})
            comm.send(m.RegisterClient(f"ghost-{i}", get_versions()).to_wire())
            if i % 2:  # a request first: what follows it in the packet is handled after it
                comm.send(m.Request(1, "identity", {}).to_wire())
            comm.send(m.UpdateGraph((_task(f"ghost-key-{i}"),), (), (f"ghost-key-{i}",)).to_wire())
            comm.send(m.DesireKeys((f"ghost-key-{i}",), f"ghost-{i}").to_wire())
            comm.abort()  # vanish without a goodbye

    _run(hclient, ghosts(100))
    poll(lambda: set(hcluster.scheduler.state.clients) <= before | {hclient.id}, timeout=10)
    poll(lambda: not [k for k in hcluster.scheduler.state.tasks if str(k).startswith("ghost-key")], timeout=10)
    assert not [c for c in hcluster.scheduler.clients if str(c).startswith("ghost-")]
    _validate(hclient)


def test_a_client_id_registered_twice_does_not_take_over_the_first(hclient, hcluster):
    register = m.RegisterClient(hclient.id, get_versions()).to_wire()
    assert _run(hclient, _raw(hcluster, register))
    assert hclient.id in hcluster.scheduler.state.clients
    assert hclient.submit(inc, 5).result(timeout=10) == 6


def test_a_flood_of_bad_connections_is_logged_a_few_lines_at_a_time(hclient, hcluster, caplog):
    host, port = hcluster.scheduler_address.split("://")[1].rsplit(":", 1)

    async def flood(n):
        for i in range(n):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"\xff" * (i % 64 + 1))  # not a handshake
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        for i in range(n):  # authenticated, then a broken packet
            comm = await connect(hcluster.scheduler_address, secret=hcluster.security.secret, info={"role": "client"})
            comm.send(("no-such-op",))
            try:
                await asyncio.wait_for(comm.read(), 5)
            except Exception:
                pass
            comm.abort()

    with caplog.at_level(logging.INFO, logger="shoal"):
        _run(hclient, flood(200))
        assert hclient.submit(inc, 9).result(timeout=10) == 10
    flood_lines = [r for r in caplog.records if "Dropped connection" in r.getMessage() or "Closing connection" in r.getMessage()]
    assert len(flood_lines) <= 6, [r.getMessage() for r in flood_lines]
    _validate(hclient)
