"""Replaying tasks in the local process: recreate_task_locally / recreate_error_locally."""

from __future__ import annotations

import traceback

import dask
import pytest
from task_functions import inc

from shoal.recreate_tasks import ReplayTaskClient


def div(x, y):
    return x / y


def test_recreate_task_locally_runs_on_real_inputs(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, x)
    assert client.recreate_task_locally(y) == 3
    assert client.recreate_task_locally(y.key) == 3


def test_recreate_error_locally_raises_the_blamed_error(client):
    x = client.submit(div, 1, 0)
    y = client.submit(inc, x)  # fails because x failed
    with pytest.raises(ZeroDivisionError) as info:
        client.recreate_error_locally(y)
    # the local traceback shows the user's function, ready for a debugger
    assert any(frame.name == "div" for frame in traceback.extract_tb(info.value.__traceback__))
    assert y.status == "error"


def test_recreate_error_locally_on_a_collection(client):
    parts = [dask.delayed(div)(1, i) for i in range(3)]
    total = client.persist(dask.delayed(sum)(parts))
    with pytest.raises(ZeroDivisionError):
        client.recreate_error_locally(total)


def test_recreate_error_locally_without_errors(client):
    with pytest.raises(ValueError, match="No errored futures passed"):
        client.recreate_error_locally(client.submit(inc, 1))


def test_replay_methods_are_instance_attributes(client):
    # as in distributed: attached to each client by ReplayTaskClient, not class methods
    assert isinstance(client.recreate_task_locally.__self__, ReplayTaskClient)
    assert "recreate_error_locally" in vars(client)
