"""Variable, Event, Semaphore and Lock from the client and inside tasks, blocking and async."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from task_functions import inc

from shoal import Client, Event, Future, Lock, Semaphore, Variable


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------------- Variable


def test_variable_data_roundtrip(client):
    v = Variable("var-data")
    v.set({"a": (1, 2), "b": [3]})
    assert v.get() == {"a": (1, 2), "b": [3]}
    v.set(123)
    assert Variable("var-data").get() == 123  # another proxy, same slot
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.05)


def test_variable_default_name_and_pickle(client):
    v = Variable()
    assert v.name.startswith("variable-")
    v2 = pickle.loads(pickle.dumps(v))
    assert v2.name == v.name
    v.set("hello")
    assert v2.get() == "hello"


def test_variable_get_timeout_accepts_strings(client):
    v = Variable()
    with pytest.raises(TimeoutError):
        v.get(timeout="100ms")


def test_variable_get_blocks_until_set(client):
    v = Variable()
    out = []
    t = threading.Thread(target=lambda: out.append(v.get(timeout=10)))
    t.start()
    v.set(7)
    t.join(10)
    assert out == [7]


def test_variable_future_kept_alive(client, poll):
    v = Variable()
    f = client.submit(inc, 1, key="var-future-kept")
    assert f.result() == 2
    v.set(f)
    del f
    poll(lambda: "var-future-kept" not in client.futures)
    g = v.get()
    assert isinstance(g, Future)
    assert g.client is client
    assert g.result() == 2
    assert client.who_has()  # still somewhere on the cluster
    del g
    v.delete()
    poll(lambda: "var-future-kept" not in client.who_has())


def test_variable_replacing_releases_old_future(client, poll):
    v = Variable()
    a = client.submit(inc, 1, key="var-old")
    v.set(a)
    a.result()
    del a
    v.set(5)
    poll(lambda: "var-old" not in client.who_has())
    assert v.get() == 5


def test_variable_cancelled_future(client, poll):
    f = client.submit(inc, 1, key="var-cancelled")
    f.result()
    client.cancel(f)
    poll(lambda: "var-cancelled" not in client.who_has())
    v = Variable()
    with pytest.raises(TimeoutError, match="unknown to scheduler"):
        v.set(f)
    with pytest.raises(TimeoutError):
        v.get(timeout=0.01)  # nothing was stored


def test_variable_future_inside_task(client):
    v = Variable("var-task")
    v.set(client.submit(inc, 10))

    def use(name):
        fut = Variable(name).get()
        return fut.result() + 1

    assert client.submit(use, "var-task").result() == 12


def test_variable_set_inside_task(client):
    def setter(v):
        v.set(("from", "task"))
        return True

    v = Variable()
    assert client.submit(setter, v).result()
    assert v.get() == ("from", "task")


def test_variable_delete_unset(client):
    Variable().delete()


def test_variable_erred_future(client):
    f = client.submit(lambda: 1 / 0)
    v = Variable()
    v.set(f)
    g = v.get()
    with pytest.raises(ZeroDivisionError):
        g.result()


# ---------------------------------------------------------------------- Event


def test_event_basics(client):
    e = Event()
    assert e.name.startswith("event-")
    assert not e.is_set()
    assert e.wait(0.05) is False
    e.set()
    assert e.is_set()
    assert e.wait() is True
    assert e.wait(0) is True
    e.clear()
    assert not e.is_set()


def test_event_across_tasks(client):
    e = Event("ev-tasks")

    def waiter(ev):
        return ev.wait(10)

    def setter(name):
        Event(name).set()
        return True

    w = client.submit(waiter, e, pure=False)
    assert not w.done()
    assert client.submit(setter, "ev-tasks").result()
    assert w.result() is True


def test_event_no_state_leak(client):
    e = Event()
    e.set()
    e.clear()
    assert e.wait(0.01) is False

    def inspect(dask_scheduler, name):
        return name in dask_scheduler.sync.state.events, len(dask_scheduler.sync.waiters)

    assert client.run_on_scheduler(inspect, name=e.name) == (False, 0)


# ---------------------------------------------------------------------- Semaphore / Lock


def test_semaphore_leases(client):
    s = Semaphore(2)
    assert s.name.startswith("semaphore-")
    assert s.acquire() is True
    assert s.acquire(timeout=1) is True
    assert s.get_value() == 2
    assert Semaphore(2, name=s.name).acquire(timeout=0) is False
    s.release()
    assert s.get_value() == 1
    s.release()
    assert s.get_value() == 0
    with pytest.raises(RuntimeError, match="Released too often"):
        s.release()


def test_semaphore_invalid_max_leases(client):
    with pytest.raises(ValueError):
        Semaphore(0)
    Semaphore(1, name="sem-inconsistent").acquire()
    with pytest.raises(ValueError, match="Inconsistent max leases"):
        Semaphore(2, name="sem-inconsistent").acquire()


def test_semaphore_limits_concurrency_in_tasks(client):
    sem = Semaphore(1, name="sem-tasks")

    def f(s, i):
        with s:
            assert s.get_value() == 1
            time.sleep(0.01)
        return i

    assert client.gather(client.map(f, [sem] * 6, range(6))) == list(range(6))
    assert sem.get_value() == 0


def test_semaphore_pickle(client):
    s = Semaphore(3, name="sem-pickle")
    s2 = pickle.loads(pickle.dumps(s))
    assert (s2.name, s2.max_leases) == ("sem-pickle", 3)
    assert s2._leases == type(s2._leases)()


def test_lock_basics(client):
    lock = Lock("lock-basics")
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    other = Lock("lock-basics")
    assert other.locked()
    assert other.acquire(timeout=0.1) is False
    assert other.acquire(blocking=False) is False
    with pytest.raises(ValueError, match="non-blocking"):
        other.acquire(blocking=False, timeout=1)
    with pytest.raises(RuntimeError, match="not held"):
        other.release()  # not ours: a clear error ...
    assert lock.locked()  # ... and nothing changed
    lock.release()
    assert not lock.locked()
    with other:  # still usable
        assert other.locked()
    assert not lock.locked()


def test_lock_unnamed_and_pickle(client):
    lock = Lock()
    assert lock.name.startswith("semaphore-")
    assert pickle.loads(pickle.dumps(lock)).name == lock.name


def test_lock_mutual_exclusion_in_tasks(client):
    def f(lock, var, i):
        with lock:
            n = var.get()
            time.sleep(0.001)
            var.set(n + 1)
        return i

    var = Variable("lock-counter")
    var.set(0)
    futs = client.map(f, [Lock("lock-tasks")] * 20, [var] * 20, range(20))
    client.gather(futs)
    assert var.get() == 20


def test_lock_released_when_client_closes(cluster, client, poll):
    lock = Lock("lock-client-gone", client=client)
    with Client(cluster, set_as_default=False) as other:
        assert Lock("lock-client-gone", client=other).acquire()
        assert lock.locked()
    poll(lambda: not lock.locked())
    assert lock.acquire(timeout=5)
    lock.release()


def test_unpickle_without_client():
    lock = pickle.loads(pickle.dumps(Lock("nobody")))
    with pytest.raises(RuntimeError, match="not properly initialized"):
        lock.acquire()


def test_tuple_names(client):
    v = Variable(("var", 1))
    v.set(1)
    assert Variable(("var", 1)).get() == 1
    lock = Lock(("lock", 2))
    with lock:
        assert Lock(["lock", 2]).locked()


# ---------------------------------------------------------------------- async mode


def test_async_mode(cluster):
    async def main():
        async with Client(cluster.scheduler_address, security=cluster.security, asynchronous=True, set_as_default=False) as c:
            v = await Variable("async-var", client=c)
            await v.set([1, 2])
            assert await v.get() == [1, 2]
            f = c.submit(inc, 41)
            await v.set(f)
            del f
            g = await v.get()
            assert await g == 42
            await v.delete()

            e = Event("async-ev", client=c)
            assert await e.wait(0.01) is False
            waiter = asyncio.ensure_future(e.wait(10))
            await e.set()
            assert await waiter is True
            assert await e.is_set()
            await e.clear()

            lock = await Lock("async-lock", client=c)
            async with lock:
                assert await lock.locked()
                assert await Lock("async-lock", client=c).acquire(timeout=0.05) is False
            assert not await lock.locked()

            sem = Semaphore(2, name="async-sem", client=c)
            async with sem:
                assert await sem.get_value() == 1
            assert await sem.get_value() == 0
            with pytest.raises(RuntimeError, match="Released too often"):
                await sem.release()

    run(main())


def test_wake_up_between_the_first_attempt_and_the_wait_is_not_lost():
    """A handler that cannot answer at once hands back a coroutine; the event it waits
    for may happen before that coroutine's first step. It must still see it (this race
    left a task-side `Event.wait` hanging until its timeout)."""
    from types import SimpleNamespace

    from shoal.sync.server import SyncServer

    async def main():
        server = SyncServer(scheduler=None)
        peer = SimpleNamespace(role="client", ident="c", closed=False)
        pending = server.event_wait(peer, "ev", timeout=30)
        assert asyncio.iscoroutine(pending)  # not set yet: it will have to wait
        server.event_set(peer, "ev")  # ... but the event comes before it starts waiting
        return await asyncio.wait_for(pending, 5)

    assert run(main()) is True


# ---------------------------------------------------------------------- distributed's extras (issue 16)


def test_multilock_num_locks(client):
    from shoal import MultiLock

    a = MultiLock(names=["x", "y", "z"], client=client)
    assert a.acquire(num_locks=2)
    b = MultiLock(names=["x", "y", "z"], client=client)
    assert b.acquire(num_locks=1, timeout=5)  # one of the three is still free
    c = MultiLock(names=["x", "y", "z"], client=client)
    assert not c.acquire(num_locks=1, timeout=0.2)  # all three are taken now
    a.release()
    assert c.acquire(num_locks=2, timeout=5)
    b.release()
    c.release()
    with pytest.raises(ValueError, match="num_locks"):
        MultiLock(names=["x"], client=client).acquire(num_locks=2)


def test_semaphore_close_releases_its_leases(client):
    from shoal import Lock, Semaphore

    sem = Semaphore(max_leases=2, name="closing-sem", client=client)
    assert sem.acquire() and sem.acquire()
    sem.close()
    other = Semaphore(max_leases=2, name="closing-sem", client=client)
    assert other.acquire(timeout=5) and other.acquire(timeout=5)
    other.release(), other.release()
    with pytest.raises(RuntimeError, match="closed"):
        sem.acquire()
    lock = Lock("closing-lock", client=client)
    assert lock.acquire()
    lock.close()
    assert Lock("closing-lock", client=client).acquire(timeout=5)


def test_client_futures_of(client):
    futures = [client.submit(sum, [i, 1]) for i in range(3)]
    assert set(client.futures_of({"a": futures[0], "b": [futures[1], (futures[2],)]})) == set(futures)
