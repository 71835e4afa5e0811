"""A task's exception as the user meets it: the caller's line and the task's own frames,
the same length however often it is raised; `Future.traceback()`; shortening and long
messages (`shoal.admin.traceback.shorten`, `shoal.admin.max-error-length`)."""

from __future__ import annotations

import asyncio
import os
import traceback

import dask
import pytest
from traceback_task_functions import TwoArgError, long_message, outer, two_arg_error

from shoal import Client

SHOAL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__import__("shoal").__file__))) + os.sep + "shoal" + os.sep


def names(tb):
    return [f.name for f in traceback.extract_tb(tb)]


def shoal_frames(tb):
    return [f for f in traceback.extract_tb(tb) if f.filename.startswith(SHOAL_DIR)]


def test_same_length_every_raise_and_only_the_tasks_frames(client):
    fut = client.submit(outer, 1)
    lengths = []
    for _ in range(3):
        with pytest.raises(ValueError, match="bad input 1") as info:
            fut.result()
        lengths.append(len(traceback.extract_tb(info.value.__traceback__)))
        # this test's line, the one re-raise (hidden by pytest and IPython), the task's frames
        assert names(info.value.__traceback__) == [
            "test_same_length_every_raise_and_only_the_tasks_frames", "result", "outer", "inner"
        ]  # fmt: skip
    assert lengths[0] == lengths[2] == 4
    assert names(fut.traceback()) == ["outer", "inner"]
    assert names(fut.exception().__traceback__) == ["outer", "inner"]
    frames = traceback.extract_tb(fut.traceback())
    assert frames[-1].filename.endswith("traceback_task_functions.py")
    assert frames[-1].line == 'raise ValueError(f"bad input {x}")'  # the source line shows


def test_gather_and_compute_raise_the_tasks_frames(client):
    fut = client.submit(outer, 2)
    for _ in range(2):
        with pytest.raises(ValueError) as info:
            client.gather([fut])
        assert names(info.value.__traceback__)[-2:] == ["outer", "inner"]
        assert len(shoal_frames(info.value.__traceback__)) <= 2  # gather + the re-raise in sync
    for _ in range(2):
        with pytest.raises(ValueError) as info:
            dask.delayed(outer)(3).compute()
        tb = info.value.__traceback__
        assert names(tb)[-2:] == ["outer", "inner"]
        assert not shoal_frames(tb)  # dask's compute() leaves out shoal's frames too


def test_awaiting_raises_the_tasks_frames(cluster, transport):
    async def main():
        address = cluster.scheduler_address if transport == "tcp" else cluster
        async with Client(address, security=cluster.security, asynchronous=True) as c:
            fut = c.submit(outer, 4)
            lengths = []
            for _ in range(3):
                try:
                    await fut
                except ValueError as e:
                    lengths.append(names(e.__traceback__))
            return lengths

    lengths = asyncio.run(main())
    assert lengths[0] == lengths[2]
    assert lengths[0][-2:] == ["outer", "inner"] and len(lengths[0]) == 4  # main, _result, task


def test_shorten_off_shows_shoals_frames(client):
    fut = client.submit(outer, 5)
    fut.exception()
    with dask.config.set({"shoal.admin.traceback.shorten": False}):
        full = traceback.extract_tb(fut.traceback())
    assert any(os.path.join("shoal", "worker") in f.filename for f in full)
    assert [f.name for f in full][-2:] == ["outer", "inner"]
    assert names(fut.traceback()) == ["outer", "inner"]  # on again


def test_long_messages_are_cut(client):
    with dask.config.set({"shoal.admin.max-error-length": 100}):
        fut = client.submit(long_message, 50_000)
        with pytest.raises(ValueError) as info:
            fut.result()
        msg = str(info.value)
        assert msg.startswith("x" * 100 + "... [50000 characters, cut at shoal.admin.max-error-length=100]")
        assert len(msg) < 200
        # a type that cannot be built from one message becomes a RuntimeError that names it
        with pytest.raises(RuntimeError, match="^TwoArgError: .*cut at shoal.admin.max-error-length=100"):
            client.submit(two_arg_error, 500).result()
        short = client.submit(two_arg_error, 10)
        with pytest.raises(TwoArgError):
            short.result()
