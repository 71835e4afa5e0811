"""Integration tests for the TCP transport (shoal.comm over 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time

import numpy as np
import pytest

from shoal.log_limit import limiter

from shoal.comm import AuthenticationError, CommClosedError, ProtocolMismatchError, connect, listen
from shoal.comm import core as comm_core
from shoal.protocol import handshake as hs
from shoal.protocol.framing import split_packet
from shoal.protocol.serialize import dumps, loads
from shoal.testing import apoll
from tests.comm_helpers import LOOPS, echo, run

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def raw_exchange(address: str, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to a listener; return everything it sends back until it closes."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    try:
        return await asyncio.wait_for(reader.read(), timeout)  # b"" or data, then EOF
    finally:
        writer.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_and_peer_info(loop):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo, info={"name": "server"}) as listener:
            assert listener.address.startswith("tcp://127.0.0.1:") and not listener.address.endswith(":0")
            comm = await connect(listener.address, info={"name": "client", "versions": {"x": 1}})
            assert comm.peer_info == {"name": "server"}
            assert comm.peer_address == listener.address
            msg = ("compute", ("key", 1), {("a", 2): [1.5, None, "✓"]}, b"\x00bin")
            comm.send(msg)
            assert await comm.read() == (
                ("compute", ("key", 1), {("a", 2): (1.5, None, "✓")}, b"\x00bin"),
            )
            await comm.close()
            assert comm.closed

    run(main(), loop)


def test_server_sees_client_info():
    async def main():
        seen = asyncio.get_running_loop().create_future()

        async def handler(comm):
            seen.set_result((comm.peer_info, comm.peer_address))
            await echo(comm)

        async with await listen("tcp://", handler, secret=b"s") as listener:
            comm = await connect(listener.address, secret=b"s", info={"name": "me"})
            info, peer = await seen
            assert info == {"name": "me"}
            assert peer == comm.local_address
            await comm.close()

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_batching_one_read_per_tick(loop):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            for i in range(100):
                comm.send(("op", i))
            msgs = await comm.read()
            assert msgs == tuple(("op", i) for i in range(100))
            # Next tick: a new batch.
            comm.send_many([("a",), ("b",)])
            assert await comm.read() == (("a",), ("b",))
            await comm.close()

    run(main(), loop)


def test_many_small_messages_in_order():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            n = 20_000
            for i in range(n):
                comm.send(("op", i, "payload"))
                if i % 1000 == 0:
                    await asyncio.sleep(0)
            got = []
            while len(got) < n:
                got.extend(m[1] for m in await comm.read())
            assert got == list(range(n))
            await comm.close()

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_200mb_numpy_round_trip(loop):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            arr = np.arange(25_000_000, dtype=np.float64)  # 200 MB
            small = np.arange(100)
            comm.send(("data", ("k", 0), dumps(arr), dumps(small)))
            comm.send(("after", 1))
            got = []
            while len(got) < 2:
                got.extend(await comm.read())
            (op, key, p, q), after = got
            assert (op, key, after) == ("data", ("k", 0), ("after", 1))
            out = loads(p)
            assert out.flags.writeable
            assert not np.shares_memory(out, arr)
            assert np.array_equal(out, arr)
            np.testing.assert_array_equal(loads(q), small)
            await comm.close()

    run(main(), loop)


def test_connect_to_closed_port_times_out_with_clear_error():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"

    async def main():
        t0 = time.monotonic()
        with pytest.raises(OSError) as info:
            await connect(address, timeout=0.3)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.25  # it waited for the timeout (how promptly it ends: benchmarks/bench_timeouts.py)
        assert "connect" in str(info.value) and address in str(info.value)
        assert not isinstance(info.value, CommClosedError)

    run(main())


def test_connect_retries_until_listener_appears():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"

    async def main():
        task = asyncio.create_task(connect(address, timeout=5))
        await asyncio.sleep(0.05)
        assert not task.done()
        async with await listen(address, echo):
            comm = await task
            comm.send("hi")
            assert await comm.read() == ("hi",)
            await comm.close()

    run(main())


def test_wrong_secret_then_good_client(caplog):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo, secret=b"right") as listener:
            with pytest.raises(AuthenticationError, match="authentication failed"):
                await connect(listener.address, secret=b"wrong", timeout=5)
            with pytest.raises(AuthenticationError, match="requires authentication: pass the cluster's security token"):
                await connect(listener.address, timeout=5)
            comm = await connect(listener.address, secret=b"right")
            comm.send("ok")
            assert await comm.read() == ("ok",)
            await comm.close()
            # both failures are counted; the second within the interval is not a line of its own
            await apoll(lambda: limited.totals.get("handshake", 0) >= before + 2, interval=0.002)

    limited = limiter(logging.getLogger("shoal.comm"))
    limited.reset()
    before = limited.totals.get("handshake", 0)
    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert sum("handshake failed" in r.getMessage() for r in caplog.records) == 1
    assert any(r.name == "shoal.comm" and "authentication failed" in r.getMessage() for r in caplog.records)


def test_secret_to_unsecured_server_fails():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            with pytest.raises(AuthenticationError, match="not authenticated"):
                await connect(listener.address, secret=b"s", timeout=5)

    run(main())


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        struct.pack("<IQ", 1, 1 << 40),  # a huge frame announced
        struct.pack("<I", 1_000_000),  # too many frames
        struct.pack("<IQ", 1, 10) + b"\xc1" * 10,  # malformed msgpack
    ],
    ids=["http", "huge-frame", "many-frames", "bad-msgpack"],
)
def test_garbage_is_dropped_and_listener_keeps_serving(payload, caplog):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo, secret=b"tok") as listener:
            reply = await raw_exchange(listener.address, payload)
            assert reply == b""  # closed without answering
            await apoll(lambda: any("handshake failed" in r.getMessage() for r in caplog.records), interval=0.002)
            comm = await connect(listener.address, secret=b"tok")
            comm.send("still alive")
            assert await comm.read() == ("still alive",)
            await comm.close()

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    rec = [r for r in caplog.records if "handshake failed" in r.getMessage()]
    assert rec and "tcp://127.0.0.1:" in rec[0].getMessage()


def test_version_mismatch_is_reported_by_listener(caplog):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            hello = {"shoal": 2, "nonce": os.urandom(32), "info": {}}
            reply = await raw_exchange(listener.address, b"".join(hs.encode_handshake(hello)))
            msg = hs.decode_handshake(split_packet(reply))
            assert msg == {"error": "protocol version mismatch: peer speaks 2, this server speaks 1"}

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())


def test_connecting_to_a_non_shoal_server_fails_fast():
    async def main():
        async def http_like(reader, writer):
            await reader.read(10)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http_like, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ProtocolMismatchError, match="does not speak the shoal protocol"):
            await connect(f"tcp://127.0.0.1:{port}", timeout=5)
        server.close()
        await server.wait_closed()

    run(main())


def test_handshake_timeout_drops_silent_peer(monkeypatch, caplog):
    monkeypatch.setattr(comm_core, "HANDSHAKE_TIMEOUT", 0.2)

    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            reply = await raw_exchange(listener.address, b"", timeout=5)
            assert reply == b""

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("handshake" in r.getMessage() for r in caplog.records)


def test_packet_cap_after_handshake(caplog):
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo, max_packet_bytes=1 << 20) as listener:
            comm = await connect(listener.address)
            comm.send(b"x" * (2 << 20))
            with pytest.raises(CommClosedError):
                await comm.read()
            # Another connection is unaffected.
            comm2 = await connect(listener.address)
            comm2.send(b"x" * 1000)
            assert await comm2.read() == (b"x" * 1000,)
            await comm2.close()

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("exceeds" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("loop", LOOPS)
def test_client_close_makes_server_read_fail(loop):
    async def main():
        result = asyncio.get_running_loop().create_future()

        async def handler(comm):
            try:
                while True:
                    msgs = await comm.read()
                    result_msgs.extend(msgs)
            except CommClosedError as exc:
                result.set_result(exc)

        result_msgs = []
        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            comm = await connect(listener.address)
            comm.send("last words")
            await comm.close()  # flushes first
            await comm.close()  # idempotent
            exc = await result
            assert isinstance(exc, CommClosedError)
            assert result_msgs == ["last words"]
            with pytest.raises(CommClosedError):
                comm.send("too late")
            with pytest.raises(CommClosedError):
                await comm.read()

    run(main(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_makes_client_read_fail(loop):
    async def main():
        async def handler(comm):
            comm.send("bye")
            await comm.close()

        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            comm = await connect(listener.address)
            assert await comm.read() == ("bye",)  # delivered before the close
            with pytest.raises(CommClosedError):
                await comm.read()
            assert comm.closed
            with pytest.raises(CommClosedError):
                comm.send("x")
            await comm.close()

    run(main(), loop)


def test_abort_and_pending_reader():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            reader = asyncio.create_task(comm.read())
            await asyncio.sleep(0)
            comm.send("dropped")
            comm.abort()
            comm.abort()
            with pytest.raises(CommClosedError):
                await reader
            await comm.close()

    run(main())


def test_listener_stop_cancels_handlers_and_closes_comms():
    async def main():
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def handler(comm):
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        listener = await listen("tcp://127.0.0.1:0", handler)
        comm = await connect(listener.address)
        await started.wait()
        await listener.stop()
        assert cancelled.is_set()
        with pytest.raises(CommClosedError):
            await comm.read()
        with pytest.raises(OSError):
            await connect(listener.address, timeout=0.2)
        await listener.stop()  # idempotent

    run(main())


def test_handler_return_closes_comm_and_handler_errors_are_logged(caplog):
    async def main():
        async def handler(comm):
            msg = await comm.read()
            if msg == ("fail",):
                raise RuntimeError("handler bug")
            comm.send("done")

        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            for m in ("fail", "ok"):
                comm = await connect(listener.address)
                comm.send(m)
                if m == "ok":
                    assert await comm.read() == ("done",)
                with pytest.raises(CommClosedError):
                    await comm.read()

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_unencodable_message_fails_at_send_and_comm_survives():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            comm.send(("ok", 1))
            with pytest.raises(TypeError, match="set"):
                comm.send(("bad", {1, 2}))
            comm.send(("ok", 2))
            assert await comm.read() == (("ok", 1), ("ok", 2))
            await comm.close()

    run(main())


def test_send_from_wrong_thread_is_refused():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            loop = asyncio.get_running_loop()
            err = await loop.run_in_executor(None, lambda: _capture(lambda: comm.send("x")))
            assert isinstance(err, RuntimeError)
            await comm.close()

    run(main())


def _capture(f):
    try:
        f()
    except Exception as exc:
        return exc
    return None


def test_concurrent_large_and_small_traffic_both_directions():
    async def main():
        async def handler(comm):
            # Reply to each packet with a large array and a small message.
            while True:
                try:
                    msgs = await comm.read()
                except CommClosedError:
                    return
                for m in msgs:
                    comm.send(("big", m[1], dumps(np.full(300_000, m[1], dtype=np.int64))))
                    comm.send(("small", m[1]))

        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            comm = await connect(listener.address)
            for i in range(20):
                comm.send(("req", i, dumps(np.full(200_000, i))))
                await asyncio.sleep(0)
            got = []
            while len(got) < 40:
                got.extend(await comm.read())
            bigs = [m for m in got if m[0] == "big"]
            assert [m[1] for m in bigs] == list(range(20))
            for m in bigs:
                arr = loads(m[2])
                assert arr.shape == (300_000,) and (arr == m[1]).all()
            await comm.close()

    run(main())


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_loopback():
    async def main():
        try:
            listener = await listen("tcp://[::1]:0", echo)
        except OSError:
            pytest.skip("IPv6 loopback not available")
        async with listener:
            assert listener.address.startswith("tcp://[::1]:")
            comm = await connect(listener.address)
            comm.send("v6")
            assert await comm.read() == ("v6",)
            await comm.close()

    run(main())


def test_bad_addresses():
    async def main():
        with pytest.raises(ValueError, match="bogus"):
            await connect("bogus://x:1")
        with pytest.raises(ValueError, match="port"):
            await connect("tcp://127.0.0.1")

    run(main())


def test_slow_reader_backpressure_keeps_order(monkeypatch):
    from shoal.comm import tcp_comm

    monkeypatch.setattr(tcp_comm, "INBOX_MAX_PACKETS", 8)

    async def main():
        release = asyncio.Event()
        got = []
        done = asyncio.get_running_loop().create_future()

        server_comms = []

        async def handler(comm):
            server_comms.append(comm)
            await release.wait()  # do not read for a while: the inbox fills, reading pauses
            try:
                while True:
                    got.extend(await comm.read())
            except CommClosedError:
                done.set_result(None)

        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            comm = await connect(listener.address)
            for i in range(500):  # one packet per tick
                comm.send(("m", i, b"x" * 1000))
                await asyncio.sleep(0)
            await apoll(lambda: server_comms and server_comms[0]._reading_paused, interval=0.002)
            release.set()
            await comm.close()
            await done
            assert [m[1] for m in got] == list(range(500))

    run(main())


def test_close_flushes_large_pending_data_and_concurrent_close():
    async def main():
        got = []
        done = asyncio.get_running_loop().create_future()

        async def handler(comm):
            try:
                while True:
                    got.extend(await comm.read())
            except CommClosedError:
                done.set_result(None)

        async with await listen("tcp://127.0.0.1:0", handler) as listener:
            comm = await connect(listener.address)
            arr = np.arange(4_000_000, dtype=np.int64)  # 32 MB: pauses the writer
            for i in range(3):
                comm.send(("big", i, dumps(arr)))
            comm.send(("end",))
            await asyncio.gather(comm.close(), comm.close())
            await done
            assert [m[0] for m in got] == ["big", "big", "big", "end"]
            assert all(np.array_equal(loads(m[2]), arr) for m in got[:3])

    run(main())


def test_send_many_with_bad_message_sends_the_good_ones():
    async def main():
        async with await listen("tcp://127.0.0.1:0", echo) as listener:
            comm = await connect(listener.address)
            with pytest.raises(TypeError):
                comm.send_many([("a",), ("b", object()), ("c",)])
            assert await comm.read() == (("a",),)
            await comm.close()

    run(main())


# ---------------------------------------------------------------------- addressing (pure)

from shoal.comm.addressing import parse_address, parse_host_port, unparse_address, unparse_host_port  # noqa: E402


@pytest.mark.parametrize(
    "address,expected",
    [
        ("tcp://127.0.0.1:8786", ("tcp", "127.0.0.1:8786")),
        ("127.0.0.1:8786", ("tcp", "127.0.0.1:8786")),
        ("TCP://host:1", ("tcp", "host:1")),
        ("inproc://123/4", ("inproc", "123/4")),
        ("tcp://[::1]:8786", ("tcp", "[::1]:8786")),
        ("tcp://", ("tcp", "")),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected
    assert parse_address(unparse_address(*expected)) == expected


def test_parse_address_unknown_scheme():
    with pytest.raises(ValueError, match="'udp'"):
        parse_address("udp://1.2.3.4:5")


@pytest.mark.parametrize(
    "hostport,default,expected",
    [
        ("h:8786", None, ("h", 8786)),
        ("h", 9, ("h", 9)),
        ("[::1]:8786", None, ("::1", 8786)),
        ("[::1]", 7, ("::1", 7)),
        ("::1", 7, ("::1", 7)),
        (":0", None, ("", 0)),
    ],
)
def test_parse_host_port(hostport, default, expected):
    assert parse_host_port(hostport, default_port=default) == expected


@pytest.mark.parametrize("bad", ["h", "h:port", "h:70000", "[::1", "[::1]x"])
def test_parse_host_port_errors(bad):
    with pytest.raises(ValueError):
        parse_host_port(bad)


def test_unparse_host_port():
    assert unparse_host_port("::1", 5) == "[::1]:5"
    assert unparse_host_port("h", 5) == "h:5"
    assert unparse_host_port("h") == "h"
