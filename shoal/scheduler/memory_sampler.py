"""The scheduler side of `shoal.diagnostics.MemorySampler`: cluster-wide memory, sampled
on a timer while a client's `sample()` block runs.

A sample is the sum over workers of one figure of `Scheduler.metrics_of` (what the
workers' heartbeats reported: `process`, `managed`, `unmanaged` or `spilled` bytes).
Each sampler is a task the scheduler owns; it ends when the client stops it, when the
client goes away, or when the scheduler closes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from shoal.rpc import Peer
from shoal.scheduler.extension import SchedulerExtension

#: what a client may ask to sample -> the `metrics_of` figure it sums
MEASURES = {"process": "memory", "managed": "managed", "unmanaged": "unmanaged", "spilled": "spilled",
            "managed_total": "managed_bytes"}  # fmt: skip


class MemorySamplers(SchedulerExtension):
    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        #: sampler id -> (client id, measure, samples, its task)
        self.running: dict[str, tuple[str, str, list, asyncio.Task]] = {}
        self._ids = itertools.count(1)

    def total(self, measure: str) -> int:
        field = MEASURES[measure]
        sched = self.scheduler
        return sum(int(sched.metrics_of(ws).get(field, 0)) for ws in sched.state.workers.values())

    def handlers(self) -> dict[str, Any]:
        return {"memory_sampler_start": self.sampler_start, "memory_sampler_stop": self.sampler_stop}

    async def sampler_start(self, peer: Peer, measure: str = "process", interval: float = 0.5) -> str:
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}: use one of {sorted(MEASURES)}")
        interval = float(interval)
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        key = f"memory-sampler-{next(self._ids)}"
        samples: list[tuple[float, int]] = [(time.time(), self.total(measure))]

        async def run() -> None:
            while True:
                await asyncio.sleep(interval)
                samples.append((time.time(), self.total(measure)))

        task = self.scheduler.spawn(run())
        self.running[key] = (peer.ident, measure, samples, task)
        return key

    async def sampler_stop(self, peer: Peer, key: str) -> list:
        entry = self.running.pop(key, None)
        if entry is None:
            raise KeyError(f"no memory sampler {key!r} is running")
        _, measure, samples, task = entry
        task.cancel()
        samples.append((time.time(), self.total(measure)))  # the block's end, however short
        return samples

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        for key, (owner, _, _, task) in list(self.running.items()):
            if owner == client_id:
                task.cancel()
                del self.running[key]

    async def close(self) -> None:
        tasks = [entry[3] for entry in self.running.values()]
        self.running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

