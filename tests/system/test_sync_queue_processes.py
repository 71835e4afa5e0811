"""Queue and MultiLock across real worker processes."""

from __future__ import annotations

import os

import pytest

from task_functions import consume_futures, inc, multilocked_increments, produce_futures

from shoal import Client, Future, MultiLock, Queue

pytestmark = pytest.mark.system


def test_queue_futures_between_task_processes(client):
    consumer = client.submit(consume_futures, "proc-q", 6, pure=False)
    producer = client.submit(produce_futures, "proc-q", 6, pure=False)
    total, consumer_pid = consumer.result(timeout=60)
    assert total == sum(range(1, 7))
    assert producer.result(timeout=60) != os.getpid()
    assert consumer_pid != os.getpid()
    assert Queue("proc-q").qsize() == 0


def test_queue_future_outlives_producer_client(cluster, client, poll):
    with Client(cluster, set_as_default=False) as producer:
        f = producer.submit(inc, 41, key="proc-q-alive")
        assert f.result() == 42
        Queue("proc-q-alive", client=producer).put(f)
        del f
    poll(lambda: client.who_has().get("proc-q-alive"), timeout=10)
    g = Queue("proc-q-alive").get(timeout=10)
    assert isinstance(g, Future)
    assert g.result() == 42
    del g
    poll(lambda: not client.who_has().get("proc-q-alive"), timeout=10)


def test_multilock_overlapping_no_lost_update(client, tmp_path):
    path = tmp_path / "counter"
    path.write_text("0")
    orders = [["ml-x", "ml-y"], ["ml-y", "ml-x"]]
    futs = client.map(multilocked_increments, [str(path)] * 8, [orders[i % 2] for i in range(8)], [5] * 8, pure=False)
    client.gather(futs)
    assert int(path.read_text()) == 40
    ml = MultiLock(["ml-x", "ml-y"])
    assert ml.acquire(timeout=5)
    ml.release()
