"""Edges user code runs into, behaving as in distributed (issue 17, items 5-10): a
scheduler that goes away, closing a client while other threads drop futures, primitives
unpickled without a client, cancelled futures in `as_completed(with_results=True)`,
`dump_cluster_state` to a `pathlib.Path`, and what `LocalCluster` leaves behind."""

from __future__ import annotations

import asyncio
import pathlib
import pickle
import socket
import sys
import threading

import pytest
from task_functions import inc

from shoal import (
    Client,
    Event,
    FutureCancelledError,
    FuturesCancelledError,
    LocalCluster,
    Lock,
    MultiLock,
    Queue,
    Scheduler,
    Semaphore,
    Variable,
    Worker,
    as_completed,
    wait,
)
from shoal.cluster_dump import load_cluster_dump
from shoal.exceptions import ClosedClientError


#: no worker has this resource: a task asking for it stays pending and holds no thread
NOWHERE = {"resources": {"nowhere": 1}}


def boom():
    raise ValueError("boom")


# ---------------------------------------------------------------------- item 5


def test_pending_futures_fail_when_the_scheduler_goes_away():
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    try:
        client = Client(cluster, set_as_default=False)
        pending = client.submit(inc, 1, **NOWHERE)
        waiter = client.submit(inc, pending)
        results: list = []
        thread = threading.Thread(target=lambda: results.append(_outcome(pending)))
        thread.start()
        cluster.close()  # the scheduler goes away; the client is not closed by anyone
        thread.join(30)
        assert not thread.is_alive(), "result() kept waiting after the scheduler went away"
        (err,) = results
        assert isinstance(err, FutureCancelledError)
        assert err.reason == "scheduler-connection-lost"
        # every way of waiting says why, at once, even though the client is closed now
        with pytest.raises(FutureCancelledError, match="scheduler-connection-lost"):
            waiter.result(timeout=5)
        with pytest.raises(FutureCancelledError, match="scheduler-connection-lost"):
            client.gather([pending, waiter])
        with pytest.raises(FuturesCancelledError):
            wait([pending, waiter], timeout=5)
        assert pending.exception() is None and pending.cancelled()
        assert [r for _, r in as_completed([pending], with_results=True)][0].reason == "scheduler-connection-lost"
        with pytest.raises(ClosedClientError):
            client.submit(inc, 1)  # and nothing new waits forever either
        client.close()
    finally:
        cluster.close()


def _outcome(future):
    try:
        return future.result(timeout=30)
    except BaseException as e:  # noqa: BLE001 - the test inspects it
        return e


def test_awaited_futures_fail_when_the_scheduler_goes_away():
    async def main():
        async with Scheduler(dashboard_address=None) as s:
            async with Client(s.address, asynchronous=True, security=s.secret) as c:
                f = c.submit(inc, 1)  # no workers: stays pending
                await s.close()
                with pytest.raises(FutureCancelledError, match="scheduler-connection-lost"):
                    await asyncio.wait_for(f, 30)

    asyncio.run(main())


# ---------------------------------------------------------------------- item 6


def test_close_while_other_threads_release_futures(cluster):
    """Closing cancels the pending futures; each cancellation wakes an `as_completed`
    consumer thread that drops its future at once, while other threads drop theirs."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    try:
        for _ in range(3):
            c = Client(cluster, set_as_default=False)
            futures = c.map(inc, range(4000), pure=False, **NOWHERE)
            completed = as_completed(futures[:2000])
            chunks = [futures[2000 + i :: 3] for i in range(3)]
            del futures
            start = threading.Barrier(5)

            def drop(chunk):
                start.wait()
                while chunk:
                    chunk.pop().release()

            def consume():
                start.wait()
                for f in completed:
                    f.release()

            threads = [threading.Thread(target=drop, args=(ch,)) for ch in chunks]
            threads.append(threading.Thread(target=consume))
            for t in threads:
                t.start()
            start.wait()
            c.close()  # RuntimeError: dictionary changed size during iteration, before the fix
            for t in threads:
                t.join(30)
            assert c.status == "closed"
    finally:
        sys.setswitchinterval(old)


# ---------------------------------------------------------------------- item 7

PRIMITIVES = {
    "Event": (lambda: Event("unpickled"), lambda o: o.is_set()),
    "Queue": (lambda: Queue("unpickled"), lambda o: o.qsize()),
    "Variable": (lambda: Variable("unpickled"), lambda o: o.set(0)),
    "Lock": (lambda: Lock("unpickled"), lambda o: o.locked()),
    "Semaphore": (lambda: Semaphore(2, name="unpickled"), lambda o: o.get_value()),
    "MultiLock": (lambda: MultiLock(["unpickled"]), lambda o: o.locked()),
}


@pytest.fixture
def no_default_client():
    from shoal.client.client import default_client

    try:
        default_client()
    except ValueError:
        return
    pytest.skip("another test left a default client in this process")


@pytest.mark.parametrize("kind", sorted(PRIMITIVES))
def test_primitive_unpickled_without_a_client(kind, no_default_client):
    make, touch = PRIMITIVES[kind]
    obj = pickle.loads(pickle.dumps(make()))
    assert obj.client is None  # no client yet: None, not an error
    assert "unpickled" in repr(obj)
    with pytest.raises(RuntimeError, match="not properly initialized"):
        touch(obj)
    # a client created later is found on the next touch
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cl, Client(cl) as c:
        assert obj.client is c
        assert touch(obj) in (False, 0, None)


# ---------------------------------------------------------------------- item 8


@pytest.mark.parametrize("raise_errors", [True, False])
def test_as_completed_with_results_yields_cancelled_futures(client, raise_errors):
    ok = client.submit(inc, 1)
    cancelled = client.submit(inc, 2, **NOWHERE)
    cancelled.cancel()
    seen = {}
    for future, result in as_completed([ok, cancelled], with_results=True, raise_errors=raise_errors):
        seen[future.key] = result
    assert seen[ok.key] == 2
    assert isinstance(seen[cancelled.key], FutureCancelledError)


def test_as_completed_with_results_raises_the_first_real_error(client):
    cancelled = client.submit(inc, 3, **NOWHERE)
    cancelled.cancel()
    bad = client.submit(boom)
    wait([bad])
    with pytest.raises(ValueError, match="boom"):
        for _ in as_completed([cancelled, bad], with_results=True):
            pass


# ---------------------------------------------------------------------- item 9


def test_dump_cluster_state_to_a_path(client, tmp_path):
    client.submit(inc, 1).result()
    target = tmp_path / "dump"
    assert isinstance(target, pathlib.Path)
    client.dump_cluster_state(target)
    written = pathlib.Path(str(target) + ".msgpack.gz")
    assert written.exists()
    state = load_cluster_dump(written)
    assert "scheduler" in state and "workers" in state


# ---------------------------------------------------------------------- item 10


@pytest.mark.parametrize("protocol", ["tcp", "tcp://"])
def test_local_cluster_protocol_with_or_without_scheme(protocol):
    with LocalCluster(n_workers=1, processes=False, protocol=protocol, dashboard_address=":0") as cl:
        assert cl.scheduler_address.startswith("tcp://127.0.0.1:")
        with Client(cl) as c:
            assert c.submit(inc, 1).result() == 2


class _FailingWorker(Worker):
    async def start(self):
        raise ValueError("this worker cannot start")


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("failure", ["worker", "scheduler-port"])
def test_a_failed_start_raises_and_leaves_no_task_running(failure):
    async def main():
        before = asyncio.all_tasks()
        held = _busy_port()
        kwargs = (
            dict(worker_class=_FailingWorker) if failure == "worker" else dict(scheduler_port=held.getsockname()[1])
        )
        try:
            with pytest.raises(RuntimeError, match="Cluster failed to start") as info:
                await LocalCluster(n_workers=1, processes=False, asynchronous=True, dashboard_address=":0", **kwargs)
        finally:
            held.close()
        assert info.value.__cause__ is not None
        await asyncio.sleep(0)  # let cancelled tasks finish
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert not left, f"tasks still running after the failed start: {left}"

    asyncio.run(main())


def test_close_leaves_no_task_running():
    async def main():
        before = asyncio.all_tasks()
        async with LocalCluster(n_workers=2, processes=False, asynchronous=True, dashboard_address=":0") as cl:
            async with Client(cl, asynchronous=True) as c:
                assert await c.submit(inc, 1) == 2
                await c.get_task_stream()
        await asyncio.sleep(0)
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert not left, f"tasks still running after close: {left}"

    asyncio.run(main())
