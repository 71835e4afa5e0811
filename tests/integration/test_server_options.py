"""distributed's Worker / Scheduler constructor options that programs pass: honoured
(scheduler_ip/port/file, preload, plugins, data, lifetime, heartbeat_interval, interface,
security, allowed_failures, worker_ttl, idle_timeout) or refused by name."""

from __future__ import annotations

import asyncio
import os

import pytest
from task_functions import inc

from shoal import Client, Scheduler, Worker
from shoal.diagnostics.plugin import WorkerPlugin
from shoal.security import Security

PRELOAD = """
def dask_setup(server):
    server.preloaded = "yes"

def dask_teardown(server):
    import os
    with open(os.environ["SHOAL_TEST_TEARDOWN_LOG"], "a") as f:
        f.write(type(server).__name__ + "\\n")
"""


class Recording(WorkerPlugin):
    name = "recording"

    def setup(self, worker):
        worker.plugin_saw = "setup"


class Store(dict):
    """A user's result store (`data=`)."""


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_worker_scheduler_ip_preload_plugins_data_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOAL_TEST_TEARDOWN_LOG", str(tmp_path / "teardown"))

    async def main():
        async with Scheduler("tcp://127.0.0.1:0", dashboard_address=None, secret=b"s" * 32) as s:
            host, port = s.address.removeprefix("tcp://").rsplit(":", 1)
            store = Store()
            async with Worker(
                scheduler_ip=host, scheduler_port=int(port), security=Security(b"s" * 32), interface="lo",
                preload=[PRELOAD], plugins=[Recording()], data=store, heartbeat_interval="50ms",
            ) as w:
                assert w.preloaded == "yes" and w.plugin_saw == "setup" and w.heartbeat_interval == 0.05
                assert w.host == "127.0.0.1" and w.store is store
                async with Client(s.address, security=Security(b"s" * 32), asynchronous=True) as c:
                    x = c.submit(inc, 1)
                    assert await x == 2
                    assert store[x.key] == 2  # results live in the user's store
        return True

    assert run(main())
    assert (tmp_path / "teardown").read_text() == "Worker\n"


def test_worker_data_as_type_and_kwargs():
    async def main():
        async with Scheduler("inproc://", dashboard_address=None) as s:
            async with Worker(s.address, data=(Store, {})) as w:
                assert type(w.store) is Store
            with pytest.raises(TypeError, match="MutableMapping"):
                Worker(s.address, data=42)

    run(main())


def test_worker_and_scheduler_through_a_scheduler_file(tmp_path):
    path = tmp_path / "scheduler.json"

    async def main():
        async with Scheduler("tcp://127.0.0.1:0", dashboard_address=None, scheduler_file=str(path),
                             secret=b"f" * 32) as s:  # fmt: skip
            assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
            async with Worker(scheduler_file=str(path)) as w:  # address and secret from the file
                assert w.scheduler_address == s.address and w.status == "running"
        assert not path.exists()  # removed when its scheduler closed

    run(main())


def test_worker_lifetime_retires_it_and_its_data_moves(poll):
    async def main():
        async with Scheduler("inproc://", dashboard_address=None) as s:
            async with Worker(s.address) as keeper, Worker(s.address, lifetime="1s") as short:
                async with Client(s.address, asynchronous=True) as c:
                    [x] = await c.scatter([41], workers=[short.address])
                    while short.status == "running":  # noqa: ASYNC110 - the lifetime is a duration
                        await asyncio.sleep(0.05)
                    await short.finished()
                    assert await x == 41 and list(s.state.workers) == [keeper.address]
                    assert x.key in keeper.data  # moved before the worker left

    run(main())


def test_scheduler_allowed_failures_worker_ttl_idle_timeout(poll):
    async def main():
        s = Scheduler("inproc://", dashboard_address=None, allowed_failures=7, worker_ttl="2 minutes",
                      idle_timeout="300ms")  # fmt: skip
        async with s:
            assert s.state.allowed_failures == 7
            while s.status == "running":  # noqa: ASYNC110 - idle_timeout is a duration
                await asyncio.sleep(0.05)
            await s.finished()
        return s.status

    assert run(main()) == "closed"


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (Worker, {"services": {"x": object}}, r"Worker\(services=.*extra services"),
        (Worker, {"dashboard_address": ":0"}, r"Worker\(dashboard_address=':0'\).*no dashboard"),
        (Worker, {"protocol": "tls"}, r"no TLS"),
        (Worker, {"WorkerStateClass": object}, r"not replaceable"),
        (Scheduler, {"services": {"x": object}}, r"Scheduler\(services=.*extra services"),
        (Scheduler, {"jupyter": True}, r"Jupyter"),
        (Scheduler, {"contact_address": "tcp://10.1.1.1:1"}, r"contact_address"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(cls, kwargs, match):
    with pytest.raises(NotImplementedError, match=match):
        cls("tcp://127.0.0.1:1", **kwargs) if cls is Worker else cls(**kwargs)


def test_defaults_of_distributed_are_accepted():
    Worker("tcp://127.0.0.1:1", dashboard=False, http_prefix="/", low_level_profiler=False, transition_counter_max=False)
    assert os.environ.get("SHOAL_TEST_TEARDOWN_LOG") is None


SCHEDULER_PRELOAD = """
from shoal.diagnostics.task_stream import TaskStreamPlugin

def dask_setup(scheduler):
    scheduler.add_plugin(TaskStreamPlugin(scheduler))
"""


def test_scheduler_preload_adds_a_plugin_as_distributed_preloads_do():
    async def main():
        async with Scheduler("inproc://", dashboard_address=None, preload=SCHEDULER_PRELOAD) as s:
            async with Worker(s.address), Client(s.address, asynchronous=True) as c:
                assert await c.submit(inc, 1) == 2
                plugin = s.plugins["task-stream"]
                await plugin.flush()
                assert [r["status"] for r in plugin.buffer] == ["OK"]

    run(main())
