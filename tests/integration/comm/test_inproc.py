"""Integration tests for the in-process transport (inproc://)."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from shoal.comm import CommClosedError, connect, listen
from shoal.protocol.serialize import dumps, loads
from tests.comm_helpers import echo, run


def test_echo_addresses_and_peer_info():
    async def main():
        seen = asyncio.get_running_loop().create_future()

        async def handler(comm):
            seen.set_result(comm.peer_info)
            await echo(comm)

        async with await listen("inproc://", handler, info={"name": "srv"}, secret=b"ignored") as listener:
            assert listener.address.startswith(f"inproc://{os.getpid()}/")
            comm = await connect(listener.address, info={"name": "cli"})
            assert comm.peer_info == {"name": "srv"}
            assert await seen == {"name": "cli"}
            assert comm.peer_address == listener.address
            assert comm.local_address.startswith("inproc://") and comm.local_address != listener.address
            comm.send(("x", ("tuple", "key"), [1, 2]))
            assert list(await comm.read()) == [("x", ("tuple", "key"), [1, 2])]
            await comm.close()

    run(main())


def test_batching_one_read_per_tick():
    async def main():
        async with await listen("inproc://", echo) as listener:
            comm = await connect(listener.address)
            for i in range(100):
                comm.send(i)
            assert list(await comm.read()) == list(range(100))
            comm.send_many(["a", "b"])
            assert list(await comm.read()) == ["a", "b"]
            await comm.close()

    run(main())


def test_large_array_passes_without_copy():
    async def main():
        async with await listen("inproc://", echo) as listener:
            comm = await connect(listener.address)
            arr = np.arange(25_000_000, dtype=np.float64)
            comm.send(("data", dumps(arr)))
            ((op, p),) = await comm.read()
            out = loads(p)
            assert np.shares_memory(out, arr)  # same process: no copy at all
            assert np.array_equal(out, arr)
            await comm.close()

    run(main())


def test_connect_to_missing_address_times_out():
    async def main():
        address = f"inproc://{os.getpid()}/999999999"
        with pytest.raises(OSError) as info:
            await connect(address, timeout=0.2)
        assert "connect" in str(info.value) and address in str(info.value)

    run(main())


def test_close_either_side():
    async def main():
        server_exc = asyncio.get_running_loop().create_future()
        received = []

        async def handler(comm):
            if comm.peer_info.get("role") == "closer":
                comm.send("bye")
                await comm.close()
                return
            try:
                while True:
                    received.extend(await comm.read())
            except CommClosedError as exc:
                server_exc.set_result(exc)

        async with await listen("inproc://", handler) as listener:
            # client closes -> server read fails (after the flushed message arrives)
            comm = await connect(listener.address)
            comm.send("last")
            await comm.close()
            await comm.close()
            assert isinstance(await server_exc, CommClosedError)
            assert received == ["last"]
            with pytest.raises(CommClosedError):
                comm.send("x")
            # server closes -> client read fails after draining
            comm = await connect(listener.address, info={"role": "closer"})
            assert list(await comm.read()) == ["bye"]
            with pytest.raises(CommClosedError):
                await comm.read()
            assert comm.closed
            comm.abort()

    run(main())


def test_abort_wakes_pending_reader():
    async def main():
        async with await listen("inproc://", echo) as listener:
            comm = await connect(listener.address)
            reader = asyncio.create_task(comm.read())
            await asyncio.sleep(0)
            comm.abort()
            with pytest.raises(CommClosedError):
                await reader

    run(main())


def test_listener_stop_and_address_reuse():
    async def main():
        started = asyncio.Event()

        async def handler(comm):
            started.set()
            await asyncio.Event().wait()

        listener = await listen("inproc://", handler)
        with pytest.raises(OSError):
            await listen(listener.address, handler)
        comm = await connect(listener.address)
        await started.wait()
        await listener.stop()
        with pytest.raises(CommClosedError):
            await comm.read()
        with pytest.raises(OSError):
            await connect(listener.address, timeout=0.05)
        again = await listen(listener.address, handler)  # address free again
        await again.stop()

    run(main())


def test_cross_thread_listener():
    """Listener on a loop in another thread (like a processes=False cluster)."""
    ready = threading.Event()
    state: dict = {}

    def server_thread():
        async def main():
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = asyncio.Event()
            listener = await listen("inproc://", echo, info={"thread": "server"})
            state["address"] = listener.address
            ready.set()
            await state["stop"].wait()
            await listener.stop()

        asyncio.run(main())

    t = threading.Thread(target=server_thread)
    t.start()
    try:
        assert ready.wait(5)

        async def client():
            comm = await connect(state["address"])
            assert comm.peer_info == {"thread": "server"}
            for i in range(1000):
                comm.send(i)
            got = []
            while len(got) < 1000:
                got.extend(await comm.read())
            assert got == list(range(1000))
            await comm.close()

        run(client())
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        t.join(5)
    assert not t.is_alive()
