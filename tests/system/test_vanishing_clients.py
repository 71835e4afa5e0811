"""A client that vanishes leaves nothing behind on the scheduler (issue 18 item 3).

Two ways to vanish without a goodbye: a connection that registers as a client, opens
everything a client can open and is aborted (no close handshake), and a real client
process that opens the same through the public API and is SIGKILLed. Each test first
checks that the scheduler holds the client's things (so it can fail), then that every
one of them is gone once the connection has ended: the registration, what it wanted,
memory samplers, progress watches and task-metadata collections (and their observers),
topic and log subscriptions, its own event topic, semaphore and lock leases, multi-lock
requests (granted and waiting), waiting sync requests, and the connection itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from task_functions import inc

from shoal import Client, LocalCluster, Lock, MultiLock, Semaphore
from shoal.comm import connect
from shoal.protocol import messages as m
from shoal.versions import get_versions

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def vcluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://") as cl:
        yield cl


@pytest.fixture
def vclient(vcluster):
    with Client(vcluster.scheduler_address, security=vcluster.security) as c:
        yield c


def _leftovers(client_id: str, dask_scheduler=None) -> dict:
    """Everything the scheduler still holds for `client_id` (empty: nothing)."""
    s = dask_scheduler
    sync = s.sync.state
    out = {
        "connection": client_id in s.clients,
        "state-client": client_id in s.state.clients,
        "wanted": sorted(str(ts.key) for ts in s.state.tasks.values() if any(c.id == client_id for c in ts.who_wants)),
        "memory-samplers": [k for k, entry in s.memory_samplers.running.items() if entry[0] == client_id],
        "watches": [w for w, entry in s.watches.watches.items() if entry[2] == client_id],
        "topic-subscriptions": sorted(t for t, ids in s.event_log.subscribers.items() if client_id in ids),
        "own-topic": client_id in s.event_log.events,
        "log-subscriptions": client_id in s.admin.log_subscribers,
        "leases": sorted((str(n), lid) for n, sem in sync.semaphores.items() for lid, h in sem.leases.items() if h == client_id),
        "multilock-requests": sorted(r for r, req in sync.multilock_requests.items() if req.holder == client_id),
    }  # fmt: skip
    return {k: v for k, v in out.items() if v}


def _sched_extras(dask_scheduler) -> dict:
    """Per-connection things not named by client id: waiting sync requests, observers."""
    s = dask_scheduler
    return {"sync-waiters": len(s.sync.waiters), "observers": len(s.state.observers), "clients": len(s.clients)}


async def _ghost(address: str, secret: bytes, client_id: str) -> tuple:
    """Register as `client_id`, open everything and read the answers: return the
    connection (to be aborted) and the answers (request id -> ok)."""
    comm = await connect(address, secret=secret, info={"role": "client"})
    key = f"{client_id}-key"
    calls = {
        1: ("memory_sampler_start", {"measure": "process", "interval": 0.05}),
        2: ("progress_start", {"keys": (key,), "complete": True}),
        3: ("task_metadata_start", {}),
        4: ("subscribe_topic", {"topics": ("ghost-topic",)}),
        5: ("subscribe_logs", {"logger_name": None, "subscribe": True}),
        6: ("sync_semaphore_acquire", {"name": "ghost-lock", "max_leases": 1, "lease_id": f"{client_id}-1"}),
        7: ("sync_multilock_acquire", {"name": "m", "names": ("ghost-a", "ghost-b"), "request_id": f"{client_id}-r1"}),
    }
    waiting = {  # never answered while the ghost lives: they wait for what it holds itself
        8: ("sync_semaphore_acquire", {"name": "ghost-lock", "max_leases": 1, "lease_id": f"{client_id}-2"}),
        9: ("sync_multilock_acquire", {"name": "m", "names": ("ghost-a",), "request_id": f"{client_id}-r2"}),
    }
    comm.send(m.RegisterClient(client_id, get_versions()).to_wire())
    comm.send(m.UpdateGraph(((key, -1, _pickled_inc(), (), (0,), None),), (), (key,)).to_wire())
    comm.send(m.DesireKeys((key,), client_id).to_wire())
    for rid, (name, kwargs) in {**calls, **waiting}.items():
        comm.send(m.Request(rid, name, kwargs).to_wire())
    answers: dict[int, bool] = {}
    while len(answers) < len(calls):
        for wire in await asyncio.wait_for(comm.read(), 30):
            if type(wire) is tuple and wire[0] == "reply":
                answers[wire[1]] = wire[2]
    return comm, answers


def _pickled_inc():
    from shoal.protocol.serialize import dumps

    return dumps((inc, 1))


def test_a_connection_aborted_without_goodbye_leaves_nothing(vclient, vcluster, poll):
    address, secret = vcluster.scheduler_address, vcluster.security.secret
    baseline = vclient.run_on_scheduler(_sched_extras)
    comm, answers = vclient.sync(_ghost, address, secret, "ghost-aborted")
    assert all(answers[i] for i in range(1, 8)), answers
    held = vclient.run_on_scheduler(_leftovers, "ghost-aborted")
    assert set(held) == {
        "connection", "state-client", "wanted", "memory-samplers", "watches", "topic-subscriptions",
        "own-topic", "log-subscriptions", "leases", "multilock-requests",
    }, held  # fmt: skip
    extras = vclient.run_on_scheduler(_sched_extras)
    assert extras["sync-waiters"] == baseline["sync-waiters"] + 2
    assert extras["observers"] == baseline["observers"] + 2

    vclient.sync(_abort, comm)  # vanish: no goodbye, no close handshake

    poll(lambda: not vclient.run_on_scheduler(_leftovers, "ghost-aborted"), timeout=20)
    poll(lambda: vclient.run_on_scheduler(_sched_extras) == baseline, timeout=20)
    # what it held is free for others
    assert Lock("ghost-lock", client=vclient).acquire(timeout=10)
    assert MultiLock(["ghost-a", "ghost-b"], client=vclient).acquire(timeout=10)
    vclient.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())


async def _abort(comm) -> None:
    comm.abort()


_KILLED_CLIENT = textwrap.dedent(
    """
    import sys, time
    from shoal import Client, Lock, MultiLock, Semaphore
    from shoal.diagnostics import MemorySampler
    from shoal.security import Security

    address, secret = sys.argv[1], bytes.fromhex(sys.argv[2])
    c = Client(address, security=Security(secret), timeout=30)
    assert Lock("killed-lock", client=c).acquire(timeout=10)
    sem = Semaphore(2, name="killed-sem", client=c)
    assert sem.acquire(timeout=10)
    assert MultiLock(["killed-a", "killed-b"], client=c).acquire(timeout=10)
    c.subscribe_topic("killed-topic", lambda event: None)
    future = c.submit(sum, [1, 2], key="killed-future")
    assert future.result(timeout=30) == 3
    sampling = MemorySampler().sample("killed", client=c, interval=0.05)
    sampling.__enter__()
    print(c.id, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_client_process_leaves_nothing(vclient, vcluster, poll):
    baseline = vclient.run_on_scheduler(_sched_extras)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CLIENT, vcluster.scheduler_address, vcluster.security.secret.hex()],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        client_id = proc.stdout.readline().strip()
        assert client_id, "the client process did not start"
        held = vclient.run_on_scheduler(_leftovers, client_id)
        assert {"connection", "wanted", "memory-samplers", "topic-subscriptions", "own-topic", "leases",
                "multilock-requests"} <= set(held), held  # fmt: skip
        assert len(held["leases"]) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
    poll(lambda: not vclient.run_on_scheduler(_leftovers, client_id), timeout=20)
    poll(lambda: vclient.run_on_scheduler(_sched_extras) == baseline, timeout=20)
    assert "killed-future" not in vcluster.scheduler.state.tasks
    assert Lock("killed-lock", client=vclient).acquire(timeout=10)
    sem = Semaphore(2, name="killed-sem", client=vclient)
    assert sem.acquire(timeout=10) and sem.acquire(timeout=10)
    assert MultiLock(["killed-a", "killed-b"], client=vclient).acquire(timeout=10)
    vclient.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())
