"""`Nanny(port=, worker_port=, config=)` as users pass them (issue 17, item 14)."""

from __future__ import annotations

import asyncio
import socket

import dask
import pytest

from shoal import Client, Nanny, Scheduler

pytestmark = pytest.mark.system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_config(key):
    return dask.config.get(key, None)


def test_nanny_worker_port_and_config():
    wport = _free_port()

    async def main():
        async with Scheduler(dashboard_address=None) as s:
            async with Nanny(
                s.address, port=0, worker_port=wport, config={"shoal.test-only.marker": "set-by-nanny"}
            ) as n:
                assert n.worker_address == f"tcp://127.0.0.1:{wport}"
                async with Client(s.address, asynchronous=True) as c:
                    assert await c.submit(read_config, "shoal.test-only.marker") == "set-by-nanny"
            assert dask.config.get("shoal.test-only.marker", None) is None  # not in this process

    asyncio.run(asyncio.wait_for(main(), 90))


def test_nanny_start_failure_is_a_runtime_error():
    async def main():
        n = Nanny(f"tcp://127.0.0.1:{_free_port()}", death_timeout=1)  # nobody listens there
        with pytest.raises(RuntimeError, match="Nanny failed to start"):
            await n

    asyncio.run(asyncio.wait_for(main(), 60))
