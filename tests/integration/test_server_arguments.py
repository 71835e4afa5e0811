"""Constructor arguments users pass as in distributed (issue 17, item 14):
`Scheduler(host=, port=, protocol=, config=)`, `LocalCluster(blocked_handlers=)`,
`Nanny(port=, worker_port=, config=)` (system test), and start-up failures as
`RuntimeError("... failed to start")` chaining the cause."""

from __future__ import annotations

import asyncio
import socket

import pytest
from task_functions import inc

from shoal import Client, LocalCluster, Scheduler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_scheduler_port_host_protocol():
    port = _free_port()

    async def main():
        async with Scheduler(port=port, host="127.0.0.1", protocol="tcp", dashboard_address=None) as s:
            assert s.address == f"tcp://127.0.0.1:{port}"
        async with Scheduler(port=0, dashboard_address=None) as s:
            assert s.address.startswith("tcp://127.0.0.1:")
        with pytest.raises(ValueError, match="either address"):
            Scheduler("tcp://127.0.0.1:0", port=1)

    run(main())


def test_scheduler_config_is_in_force_while_it_is_built():
    async def main():
        async with Scheduler(config={"shoal.scheduler.allowed-failures": 7}, dashboard_address=None) as s:
            assert s.state.allowed_failures == 7
        async with Scheduler(dashboard_address=None) as s:
            assert s.state.allowed_failures != 7  # nothing leaked into the global config

    run(main())


def test_scheduler_start_failure_is_a_runtime_error():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]

        async def main():
            s = Scheduler(port=port, dashboard_address=None)
            with pytest.raises(RuntimeError, match="Scheduler failed to start") as info:
                await s
            assert isinstance(info.value.__cause__, OSError)
            assert s.status == "closed"

        run(main())


def test_local_cluster_blocked_handlers():
    with LocalCluster(n_workers=1, processes=False, blocked_handlers=["run_on_scheduler"], dashboard_address=":0") as cl:
        with Client(cl) as c:
            with pytest.raises(ValueError, match="'run_on_scheduler' handler has been explicitly disallowed"):
                c.run_on_scheduler(lambda: 1)
            assert c.submit(inc, 1).result() == 2  # everything else works


def test_blocked_handlers_from_config():
    import dask

    with dask.config.set({"shoal.scheduler.blocked-handlers": ["get_events"]}):
        with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cl, Client(cl) as c:
            with pytest.raises(ValueError, match="explicitly disallowed"):
                c.get_events("x")


def test_worker_start_failure_is_a_runtime_error_and_leaves_nothing():
    from shoal import Worker

    async def main():
        before = asyncio.all_tasks()
        w = Worker(f"tcp://127.0.0.1:{_free_port()}", death_timeout=0.5)  # nobody listens there
        with pytest.raises(RuntimeError, match="Worker failed to start") as info:
            await w
        assert info.value.__cause__ is not None
        assert w.status == "closed"
        await asyncio.sleep(0)
        assert not (asyncio.all_tasks() - before - {asyncio.current_task()})

    run(main())
