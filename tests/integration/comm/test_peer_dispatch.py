"""How a `Peer` answers requests: plain handlers at once, coroutine handlers in tasks,
and everything one connection sends handled in the order it was sent."""

from __future__ import annotations

import asyncio

import pytest

from shoal.comm import connect, listen
from shoal.protocol import messages as m
from shoal.rpc.core import NOTIFY_ID, Peer
from tests.comm_helpers import run


async def serve(handlers, on_messages=None):
    """A listener whose connections become peers with `handlers`; returns (listener, client peer)."""
    peers: list[Peer] = []

    async def on_comm(comm):
        peer = Peer(comm, handlers, on_messages)
        peers.append(peer)
        await peer.run()

    listener = await listen("inproc://", on_comm)
    client = Peer(await connect(listener.address))
    client.start()
    return listener, client, peers


def test_plain_handler_is_answered_without_a_task():
    tasks_seen = []

    def plain(peer, x):
        tasks_seen.append(len(peer._tasks))
        return x + 1

    async def main():
        listener, client, _ = await serve({"plain": plain})
        try:
            assert await client.request("plain", x=1) == 2
            assert tasks_seen == [0]
        finally:
            await client.close()
            await listener.stop()

    run(main())


def test_plain_handler_errors_and_slow_paths_come_back():
    gate: asyncio.Event | None = None

    def maybe_wait(peer, wait):
        if not wait:
            return "now"

        async def later():
            await gate.wait()
            return "later"

        return later()

    def bad(peer):
        raise KeyError("nope")

    async def main():
        nonlocal gate
        gate = asyncio.Event()
        listener, client, _ = await serve({"maybe_wait": maybe_wait, "bad": bad})
        try:
            slow = asyncio.ensure_future(client.request("maybe_wait", wait=True))
            assert await client.request("maybe_wait", wait=False) == "now"  # not blocked by the slow one
            assert not slow.done()
            gate.set()
            assert await slow == "later"
            with pytest.raises(KeyError, match="nope"):
                await client.request("bad")
        finally:
            await client.close()
            await listener.stop()

    run(main())


def test_one_connection_is_handled_in_the_order_sent():
    log: list[str] = []

    async def coro_handler(peer, tag):
        log.append(tag)

    def plain_handler(peer, tag):
        log.append(tag)
        return tag

    def on_messages(peer, msgs):
        log.extend(f"msg-{msg.keys[0]}" for msg in msgs)

    async def main():
        listener, client, _ = await serve({"coro": coro_handler, "plain": plain_handler}, on_messages)
        try:
            # one packet: message, coroutine request, plain request, message, plain request
            client.send(m.ReleaseKeys(("a",)))
            client.send(m.Request(NOTIFY_ID, "coro", {"tag": "coro-1"}))
            client.send(m.Request(NOTIFY_ID, "plain", {"tag": "plain-2"}))
            client.send(m.ReleaseKeys(("b",)))
            last = asyncio.ensure_future(client.request("plain", tag="plain-3"))
            assert await last == "plain-3"
            # and once more, with the coroutine request later in the packet
            client.send(m.Request(NOTIFY_ID, "plain", {"tag": "plain-4"}))
            client.send(m.ReleaseKeys(("c",)))
            client.send(m.Request(NOTIFY_ID, "coro", {"tag": "coro-5"}))
            assert await client.request("plain", tag="plain-6") == "plain-6"
        finally:
            await client.close()
            await listener.stop()

    run(main())
    assert log == ["msg-a", "coro-1", "plain-2", "msg-b", "plain-3", "plain-4", "msg-c", "coro-5", "plain-6"]


def test_a_pooled_connection_that_ends_leaves_the_pool():
    """A worker's pool must not keep a peer (and its comm) for every worker that ever died."""
    from shoal.rpc.core import ConnectionPool

    async def main():
        peers: list[Peer] = []

        async def on_comm(comm):
            peer = Peer(comm, {"echo": lambda peer, x: x})
            peers.append(peer)
            await peer.run()

        listener = await listen("tcp://127.0.0.1:0", on_comm)
        pool = ConnectionPool(secret=None, timeout=5)
        try:
            first = await pool.get(listener.address)
            assert await first.request("echo", x=1) == 1
            assert pool.peers == {listener.address: first}
            peers[0].comm.abort()  # the other side goes away
            await asyncio.wait_for(first.reader, 10)
            assert pool.peers == {}
            again = await pool.get(listener.address)  # a new connection when next needed
            assert again is not first and await again.request("echo", x=2) == 2
        finally:
            await pool.close()
            await listener.stop()

    run(main())
