"""The public extension door of the scheduler and the worker (`add_extension`): handlers
reached by clients, life-cycle hooks, state changes through `stimulate`, owned background
tasks, and errors for clashing names."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shoal import Client
from shoal.scheduler.events import HoldKeys, ReleaseHold
from shoal.scheduler.extension import SchedulerExtension
from shoal.scheduler.server import Scheduler
from shoal.worker.extension import WorkerExtension
from shoal.worker.server import Worker


class Recorder(SchedulerExtension):
    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.calls: list[tuple] = []
        self.started = self.closed = False

    def handlers(self):
        return {"recorder_hold": self.hold, "recorder_release": self.release, "recorder_calls": self.get_calls}

    async def start(self):
        self.started = True
        self.ticker = self.scheduler.spawn(asyncio.sleep(3600))  # owned: ended on close

    def hold(self, peer, keys):
        sched = self.scheduler
        sched.stimulate(HoldKeys(sched.new_stimulus_id("recorder"), "recorder", tuple(keys)))

    def release(self, peer):
        sched = self.scheduler
        sched.stimulate(ReleaseHold(sched.new_stimulus_id("recorder"), "recorder"))

    async def get_calls(self, peer):
        return [list(c) for c in self.calls]

    def add_worker(self, address, stimulus_id):
        self.calls.append(("add_worker", address))

    def remove_worker(self, address, reason, stimulus_id):
        self.calls.append(("remove_worker", address, reason))

    def add_client(self, client_id, stimulus_id):
        self.calls.append(("add_client", client_id))

    def remove_client(self, client_id, stimulus_id):
        self.calls.append(("remove_client", client_id))

    def restart(self, stimulus_id):
        self.calls.append(("restart", stimulus_id.startswith("restart")))

    def close(self):
        self.closed = True


class Broken(SchedulerExtension):
    def add_client(self, client_id, stimulus_id):
        raise RuntimeError("boom")


class Shards(WorkerExtension):
    def __init__(self, worker):
        super().__init__(worker)
        self.closed = False

    def handlers(self):
        return {"shards_put": self.put, "shards_keys": self.keys}

    def put(self, peer, key, value):
        self.worker.store[key] = value  # the worker's data store (spills if it must)
        return len(self.worker.store)

    def keys(self, peer):
        return sorted(self.worker.store)

    async def close(self):
        self.closed = True


def test_scheduler_extension_hooks_handlers_and_holds(caplog):
    async def main():
        async with Scheduler("inproc://", validate=True) as s:
            rec = s.add_extension("recorder", Recorder(s))
            s.add_extension("broken", Broken(s))
            await asyncio.sleep(0)
            assert rec.started
            with pytest.raises(ValueError, match="already exists"):
                s.add_extension("recorder", Recorder(s))
            with pytest.raises(ValueError, match="already have a handler"):
                s.add_extension("other", Recorder(s))
            async with Worker(s.address) as w:
                async with Client(s.address, asynchronous=True) as c:
                    f = c.submit(sum, [1, 2])
                    assert await f == 3
                    await c.scheduler_comm.request("recorder_hold", keys=[f.key])
                    del f
                    await asyncio.sleep(0.05)
                    assert s.state.tasks  # the hold keeps the result, though no future does
                    assert "recorder" in s.state.holds and "recorder" not in s.state.clients
                    await c.scheduler_comm.request("recorder_release")
                    while s.state.tasks:
                        await asyncio.sleep(0.01)
                    cid = c.id
                    await c.restart(timeout=10, wait_for_workers=False)
                    calls = await c.scheduler_comm.request("recorder_calls")
                assert ["add_worker", w.address] in calls
                assert ["add_client", cid] in calls
                assert ["restart", True] in calls
            while not any(c[0] == "remove_worker" for c in rec.calls):
                await asyncio.sleep(0.01)
            assert ("remove_client", cid) in rec.calls
            ticker = rec.ticker
        assert rec.closed and ticker.done()

    with caplog.at_level(logging.ERROR, logger="shoal.scheduler"):
        asyncio.run(main())
    assert "scheduler extension 'broken' failed in add_client" in caplog.text


def test_worker_extension_handlers_store_and_close():
    async def main():
        async with Scheduler("inproc://") as s, Worker(s.address) as w:
            ext = w.add_extension("shards", Shards(w))
            with pytest.raises(ValueError, match="already exists"):
                w.add_extension("shards", Shards(w))
            async with Client(s.address, asynchronous=True) as c:
                reply = await c.scheduler_comm.request("broadcast", name="shards_put", kwargs={"key": "k", "value": 7})
                assert list(reply) == [w.address] and reply[w.address][0]
                assert w.store["k"] == 7
            await w.close()
            assert ext.closed

    asyncio.run(main())
