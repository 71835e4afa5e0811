"""Persisted collections and futures inside objects reach tasks in worker processes
(where an unpickled `Future` binds to the task's client, as in distributed)."""

from __future__ import annotations

import pytest
from argument_task_functions import Point, describe, inc, total_of_array, total_via_client

import dask.array as da

pytestmark = pytest.mark.system


def test_persisted_collection_reaches_a_worker_process(client):
    x = client.persist(da.arange(10, chunks=5))
    assert client.submit(total_of_array, x, pure=False).result(timeout=60) == 45
    assert client.submit(total_via_client, x, pure=False).result(timeout=60) == 45


def test_futures_in_a_namedtuple_on_a_worker_process(client):
    f = client.submit(inc, 1)
    assert client.submit(describe, Point(f, [f])).result(timeout=60) == ("Point", Point(2, [2]))


class _Box:
    """An object the client does not look into: its future travels pickled."""

    def __init__(self, future):
        self.future = future


def test_a_future_pickled_inside_an_object_binds_in_the_task(client):
    f = client.submit(inc, 41)
    box = _Box(f)
    assert client.submit(lambda b: b.future.result(), box).result(timeout=60) == 42
