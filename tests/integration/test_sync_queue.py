"""Queue and MultiLock from the client and inside tasks, blocking and async."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from task_functions import inc

from shoal import Client, Event, Future, MultiLock, Queue, Variable


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------------- Queue


def test_queue_data_fifo(client):
    q = Queue()
    assert q.name.startswith("queue-")
    for item in [1, (2, 3), {"a": [4]}, None]:
        q.put(item)
    assert q.qsize() == 4
    assert q.get() == 1
    assert q.get() == (2, 3)  # tuples survive as tuples
    assert Queue(q.name).get() == {"a": [4]}  # another proxy, same queue
    assert q.get(timeout=1) is None
    assert q.qsize() == 0


def test_pipelined_put_is_ordered_and_fails_in_the_caller(cluster, client):
    """`put` of data into an unbounded queue does not wait for the scheduler: every later
    call of the same client is ordered after it, other clients see the items, and a value
    that cannot be pickled fails in the caller (nothing is queued)."""
    q = Queue()
    for i in range(50):
        q.put(i)
    assert q.qsize() == 50  # no wait needed: same connection, in order
    with Client(cluster, set_as_default=False) as other:
        assert Queue(q.name, client=other).get(batch=10) == list(range(10))
    with pytest.raises(Exception, match="pickle"):
        q.put(threading.Lock())
    assert q.get(batch=True) == list(range(10, 50))


def test_queue_get_timeout(client):
    q = Queue()
    with pytest.raises(TimeoutError):
        q.get(timeout="100ms")
    with pytest.raises(TimeoutError):
        q.get(timeout=0)


def test_queue_get_blocks_until_put(client):
    q = Queue()
    out = []
    t = threading.Thread(target=lambda: out.append(q.get(timeout=10)))
    t.start()
    q.put("x")
    t.join(10)
    assert out == ["x"]


def test_queue_maxsize_put_timeout(client):
    q = Queue(maxsize=2)
    q.put(1)
    q.put(2)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        q.put(3, timeout=0.1)
    assert q.qsize() == 2
    out = []
    t = threading.Thread(target=lambda: out.append(q.put(3, timeout=10)))
    t.start()
    assert q.get() == 1  # makes room: the blocked put completes
    t.join(10)
    assert out == [None]
    assert q.get(batch=True) == [2, 3]


def test_queue_batch(client):
    q = Queue()
    assert q.get(batch=True) == []  # never waits
    for i in range(5):
        q.put(i)
    assert q.get(batch=2) == [0, 1]
    with pytest.raises(TimeoutError):
        q.get(batch=4, timeout=0.1)
    assert q.qsize() == 3  # a timed-out batch takes nothing
    out = []
    t = threading.Thread(target=lambda: out.append(q.get(batch=4, timeout=10)))
    t.start()
    q.put(5)
    t.join(10)
    assert out == [[2, 3, 4, 5]]
    with pytest.raises(ValueError):
        q.get(batch=-1)


def test_queue_bad_maxsize():
    with pytest.raises(ValueError):
        Queue(maxsize=-1)


def test_queue_pickle(client):
    q = Queue("q-pickle", maxsize=3)
    q2 = pickle.loads(pickle.dumps(q))
    assert (q2.name, q2.maxsize) == ("q-pickle", 3)
    q.put("hello")
    assert q2.get() == "hello"


def test_queue_unpickle_without_client():
    q = pickle.loads(pickle.dumps(Queue("nobody")))
    with pytest.raises(RuntimeError, match="not properly initialized"):
        q.qsize()


def test_queue_future_outlives_producer_reference(client, poll):
    q = Queue()
    f = client.submit(inc, 1, key="q-future-kept")
    assert f.result() == 2
    q.put(f)
    del f
    poll(lambda: "q-future-kept" not in client.futures)
    assert client.who_has().get("q-future-kept")  # the queue holds it
    got = q.get()
    assert isinstance(got, Future)
    assert got.client is client
    poll(lambda: got.status == "finished")
    assert got.result() == 2
    got.release()
    poll(lambda: not client.who_has().get("q-future-kept"))


def test_queue_same_future_twice(client, poll):
    q = Queue()
    f = client.submit(inc, 5, key="q-twice")
    q.put(f)
    q.put(f)
    del f
    a = q.get()
    del a
    poll(lambda: "q-twice" not in client.futures)
    b = q.get()  # still held by the queue's second occurrence
    assert b.result() == 6


def test_queue_future_from_closed_client(cluster, client, poll):
    with Client(cluster, set_as_default=False) as producer:
        f = producer.submit(inc, 41, key="q-closed-producer")
        assert f.result() == 42
        Queue("q-closed", client=producer).put(f)
        del f
    assert Queue("q-closed").get(timeout=10).result() == 42


def test_queue_erred_future(client):
    q = Queue()
    q.put(client.submit(lambda: 1 / 0))
    g = q.get()
    with pytest.raises(ZeroDivisionError):
        g.result()


def test_queue_cancelled_future(client, poll):
    f = client.submit(inc, 1, key="q-cancelled")
    f.result()
    client.cancel(f)
    poll(lambda: "q-cancelled" not in client.who_has())
    q = Queue()
    with pytest.raises(TimeoutError, match="unknown to scheduler"):
        q.put(f)
    assert q.qsize() == 0


def produce(q, n):
    for i in range(n):
        q.put(i)
    return n


def consume(q, n):
    return [q.get(timeout=30) for _ in range(n)]


def test_queue_producer_consumer_tasks(client):
    q = Queue("q-tasks", maxsize=2)  # producer blocks on the small queue
    c = client.submit(consume, q, 10, pure=False)
    p = client.submit(produce, q, 10, pure=False)
    assert p.result() == 10
    assert c.result() == list(range(10))


def test_queue_futures_through_tasks(client):
    def producer(name):
        from shoal import get_client

        c = get_client()
        q = Queue(name)
        for i in range(4):
            q.put(c.submit(inc, i, pure=False))
        return True

    def consumer(name):
        futs = Queue(name).get(batch=4, timeout=30)
        return sum(f.result() for f in futs)

    assert client.submit(producer, "q-task-futures", pure=False).result()
    assert client.submit(consumer, "q-task-futures", pure=False).result() == 1 + 2 + 3 + 4


def test_queue_tuple_name(client):
    Queue(("q", 1)).put("t")
    assert Queue(["q", 1]).get() == "t"


# ---------------------------------------------------------------------- MultiLock


def test_multilock_basics(client):
    a = MultiLock(["ml-a", "ml-b"])
    assert not a.locked()
    assert a.acquire()
    assert a.locked()
    b = MultiLock(["ml-b", "ml-c"])
    assert b.acquire(timeout=0.1) is False
    assert not b.locked()
    assert b.acquire(blocking=False) is False
    with pytest.raises(ValueError, match="non-blocking"):
        b.acquire(blocking=False, timeout=1)
    with pytest.raises(ValueError, match="not yet acquired"):
        b.release()
    c = MultiLock(["ml-c"])
    assert c.acquire(timeout=1)  # b's timed-out request left no partial hold
    c.release()
    a.release()
    assert not a.locked()
    with b:
        assert b.locked()
    assert not b.locked()


def test_multilock_waiter_woken_on_release(client):
    a = MultiLock(["mlw-a", "mlw-b"])
    a.acquire()
    out = []
    b = MultiLock(["mlw-b", "mlw-a"])  # opposite order
    t = threading.Thread(target=lambda: out.append(b.acquire(timeout=10)))
    t.start()
    a.release()
    t.join(10)
    assert out == [True]
    b.release()


def test_multilock_timeout_wakes_next_waiter(client):
    first = MultiLock(["mlt-a"])
    first.acquire()
    blocked = MultiLock(["mlt-a", "mlt-b"])
    results = {}
    t1 = threading.Thread(target=lambda: results.setdefault("blocked", blocked.acquire(timeout=0.3)))
    t1.start()
    follower = MultiLock(["mlt-b"])
    t2 = threading.Thread(target=lambda: results.setdefault("follower", follower.acquire(timeout=10)))
    t2.start()
    t1.join(10)
    t2.join(10)
    assert results == {"blocked": False, "follower": True}
    follower.release()
    first.release()


def test_multilock_pickle(client):
    ml = MultiLock(["p-a", "p-b"])
    ml2 = pickle.loads(pickle.dumps(ml))
    assert ml2.names == ["p-a", "p-b"]
    assert ml2.id != ml.id
    with ml:
        assert ml2.acquire(timeout=0.05) is False


def test_multilock_released_when_client_closes(cluster, client, poll):
    with Client(cluster, set_as_default=False) as other:
        assert MultiLock(["mlc-a", "mlc-b"], client=other).acquire()
        assert MultiLock(["mlc-b"]).acquire(timeout=0.05) is False
    mine = MultiLock(["mlc-b", "mlc-a"])
    assert mine.acquire(timeout=5)
    mine.release()


def test_multilock_mutual_exclusion_in_tasks(client):
    def f(names, var, i):
        with MultiLock(names):
            n = var.get()
            time.sleep(0.001)
            var.set(n + 1)
        return i

    var = Variable("ml-counter")
    var.set(0)
    names = [["mlx-a", "mlx-b"], ["mlx-b", "mlx-a"], ["mlx-a", "mlx-b", "mlx-c"]]
    futs = client.map(f, [names[i % 3] for i in range(15)], [var] * 15, range(15), pure=False)
    assert client.gather(futs) == list(range(15))
    assert var.get() == 15


def test_multilock_held_by_task(client):
    def holder(ev_name):
        with MultiLock(["mlh-a"]):
            Event(ev_name + "-held").set()
            Event(ev_name).wait(30)
        return True

    fut = client.submit(holder, "mlh-go", pure=False)
    assert Event("mlh-go-held").wait(30)
    ml = MultiLock(["mlh-a", "mlh-b"])
    assert ml.acquire(timeout=0.05) is False
    Event("mlh-go").set()
    assert ml.acquire(timeout=10)
    ml.release()
    assert fut.result()


# ---------------------------------------------------------------------- async mode


def test_async_mode(cluster):
    async def main():
        async with Client(cluster.scheduler_address, security=cluster.security, asynchronous=True, set_as_default=False) as c:
            q = await Queue("async-q", client=c, maxsize=1)
            await q.put((1, 2))
            assert await q.qsize() == 1
            with pytest.raises(TimeoutError):
                await q.put(3, timeout=0.05)
            assert await q.get() == (1, 2)
            getter = asyncio.ensure_future(q.get(timeout=10))
            f = c.submit(inc, 41)
            await q.put(f)
            del f
            g = await getter
            assert await g == 42
            assert await q.get(batch=True) == []

            ml = MultiLock(["async-a", "async-b"], client=c)
            async with ml:
                assert await ml.locked()
                assert await MultiLock(["async-b"], client=c).acquire(timeout=0.05) is False
            assert not await ml.locked()
            with pytest.raises(ValueError, match="not yet acquired"):
                await ml.release()

    run(main())
