"""The client's outbox (`shoal.client.outbox`): one ordered queue to the scheduler, flushed
once per loop tick, from any thread; a closed client drops releases and refuses the rest."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shoal.client.outbox import Outbox
from shoal.comm.errors import CommClosedError
from shoal.exceptions import ClosedClientError
from shoal.protocol import messages as m


class FakeComm:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


class FakePeer:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list = []
        self.closed = False
        self.comm = FakeComm()
        self.fail_after = fail_after

    def send(self, msg: m.Message) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise CommClosedError("gone")
        self.sent.append(msg)


class FakeClient:
    """The members of a `Client` the outbox reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer: FakePeer | None) -> None:
        self._aloop = loop
        self.scheduler_comm = peer
        self.status = "running"
        self._started = None

    def __repr__(self) -> str:
        return "<FakeClient>"


def test_one_flush_per_tick_in_order_from_every_thread():
    async def main() -> tuple[FakePeer, Outbox]:
        peer = FakePeer()
        box = Outbox(FakeClient(asyncio.get_running_loop(), peer))

        def produce(tag: str) -> None:
            for i in range(200):
                box.send(m.DesireKeys((f"{tag}-{i}",), tag))

        threads = [threading.Thread(target=produce, args=(t,)) for t in "ab"]
        for t in threads:
            t.start()
        box.send(m.DesireKeys(("loop-0",), "loop"))
        box.send(m.DesireKeys(("loop-1",), "loop"))
        assert peer.sent == []  # nothing leaves before the end of this tick
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join() for t in threads])
        while box.queue or box.pending:
            await asyncio.sleep(0)
        return peer, box

    peer, _ = asyncio.run(main())
    assert len(peer.sent) == 402
    for tag in ("a", "b", "loop"):  # each producer's messages keep their order
        keys = [msg.keys[0] for msg in peer.sent if msg.client_id == tag]
        assert keys == sorted(keys, key=lambda k: int(k.rsplit("-", 1)[1]))


def test_a_graph_batch_is_its_own_packet():
    async def main() -> FakePeer:
        peer = FakePeer()
        box = Outbox(FakeClient(asyncio.get_running_loop(), peer))
        box.send(m.ReleaseKeys(("x",)))
        box.send(m.UpdateGraph((), (), ()))
        box.send(m.ReleaseKeys(("y",)))
        box.flush()
        return peer

    peer = asyncio.run(main())
    assert [type(x) for x in peer.sent] == [m.ReleaseKeys, m.UpdateGraph, m.ReleaseKeys]
    assert peer.comm.flushes == 1


def test_a_closed_client_drops_releases_and_refuses_the_rest():
    async def main() -> None:
        box = Outbox(FakeClient(asyncio.get_running_loop(), FakePeer()))
        box.client.status = "closing"
        box.send(m.ReleaseKeys(("x",)))  # nothing to release any more: no error
        assert not box.queue
        with pytest.raises(ClosedClientError, match="FakeClient"):
            box.send(m.DesireKeys(("x",), "c"))

    asyncio.run(main())


def test_a_lost_connection_clears_the_queue():
    async def main() -> Outbox:
        peer = FakePeer(fail_after=1)
        box = Outbox(FakeClient(asyncio.get_running_loop(), peer))
        for k in "abc":
            box.send(m.ReleaseKeys((k,)))
        box.flush()
        return box

    box = asyncio.run(main())
    assert not box.queue and len(box.client.scheduler_comm.sent) == 1
