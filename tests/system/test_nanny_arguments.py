"""`Nanny(...)` options as users pass them: port=, worker_port=, config= (issue 17, item 14),
distributed's others (issue 16: scheduler_ip/file, preloads, worker options, refusals)."""

from __future__ import annotations

import asyncio
import os
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


NANNY_PRELOAD = """
import os

def dask_setup(nanny):
    nanny.env["SHOAL_TEST_PRELOADED_BY"] = "nanny-preload"
    with open(os.environ["SHOAL_TEST_PRELOAD_LOG"], "a") as f:
        f.write("setup\\n")

def dask_teardown(nanny):
    with open(os.environ["SHOAL_TEST_PRELOAD_LOG"], "a") as f:
        f.write("teardown\\n")
"""


def test_nanny_scheduler_ip_file_and_nanny_preload(tmp_path, monkeypatch):
    from shoal.scheduler_file import write_scheduler_file

    monkeypatch.setenv("SHOAL_TEST_PRELOAD_LOG", str(tmp_path / "log"))
    script = tmp_path / "nanny_setup.py"
    script.write_text(NANNY_PRELOAD)

    async def main():
        async with Scheduler(dashboard_address=None) as s:
            host, port = s.address.removeprefix("tcp://").rsplit(":", 1)
            async with Nanny(scheduler_ip=host, scheduler_port=int(port), preload_nanny=[str(script)]) as n:
                assert n.scheduler_address == s.address and n.worker_address
            path = tmp_path / "scheduler.json"
            write_scheduler_file(str(path), {"address": s.address, "id": "test"})
            async with Nanny(scheduler_file=str(path), quiet=True, silence_logs=40) as n:
                assert n.scheduler_address == s.address and n.log_level == "ERROR" and n.worker_address

    asyncio.run(asyncio.wait_for(main(), 90))
    assert (tmp_path / "log").read_text() == "setup\nteardown\n"


def test_nanny_refuses_by_name_what_it_cannot_honour():
    with pytest.raises(NotImplementedError, match=r"Nanny\(services=.*extra services"):
        Nanny("tcp://127.0.0.1:1", services={"x": object})
    with pytest.raises(NotImplementedError, match=r"Nanny\(protocol='tls'\).*no TLS"):
        Nanny("tcp://127.0.0.1:1", protocol="tls")
    with pytest.raises(NotImplementedError, match="contact_address"):
        Nanny("tcp://127.0.0.1:1", contact_address="tcp://10.0.0.1:1234")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['nthread'\\]"):
        Nanny("tcp://127.0.0.1:1", nthread=2)
    with pytest.raises(ValueError, match="no such network interface"):
        Nanny("tcp://127.0.0.1:1", interface="no-such-if0")
    with pytest.raises(FileNotFoundError, match="no such file"):
        Nanny("tcp://127.0.0.1:1", preload_nanny="/no/such/setup.py")
    assert Nanny("tcp://127.0.0.1:1", interface="lo", reconnect=False, worker_class="distributed.Worker").host == "127.0.0.1"


WORKER_PRELOAD = """
def dask_setup(worker):
    worker.preloaded_in_pid = __import__("os").getpid()
"""


def preloaded_pid(dask_worker):
    return dask_worker.preloaded_in_pid


def test_nanny_worker_lifetime_restart_and_preload_in_the_worker_process(poll):
    async def main():
        async with Scheduler(dashboard_address=None) as s:
            async with Nanny(s.address, lifetime="2s", lifetime_restart=True, preload=[WORKER_PRELOAD]) as n:
                first = n.worker_address
                async with Client(s.address, asynchronous=True) as c:
                    [pid] = (await c.run(preloaded_pid)).values()
                    assert pid == n.pid != os.getpid()  # the preload ran in the worker process
                    while n.worker_address == first or n.worker_address not in s.state.workers:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)  # the lifetime is a duration: nothing else to wait on
                    assert n.status == "running"  # the nanny stayed
                    [pid2] = (await c.run(preloaded_pid)).values()
                    assert pid2 == n.pid != pid  # a fresh worker process, preloaded too

    asyncio.run(asyncio.wait_for(main(), 90))
