"""Scheduler request handlers behind `Client.profile` and `performance_report`.

Profiles and memory histories live on the workers (`shoal.profile.Sampler`, one per
worker); the scheduler fetches them on demand and merges them, so nothing is sent per
task or per sample. The scheduler also samples its own event-loop thread
(`Client.profile(scheduler=True)`, `shoal.scheduler.profile.*`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from shoal import profile
from shoal.rpc import Peer
from shoal.scheduler.extension import SchedulerExtension

logger = logging.getLogger("shoal.scheduler")


class ProfileServer(SchedulerExtension):
    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        self.sampler: profile.Sampler | None = None

    def handlers(self) -> dict[str, Any]:
        return {"profile": self.profile, "memory_history": self.memory_history}

    def start(self) -> None:
        """Start sampling the calling (event-loop) thread."""
        if self.sampler is not None:
            return
        loop_thread = threading.get_ident()
        self.sampler = profile.sampler_from_config(
            "scheduler", lambda: [(loop_thread, profile.SERVER)], name="shoal-scheduler-profile"
        )
        self.sampler.start()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()

    async def _ask(self, workers: list | None, op: str, **kwargs: Any) -> dict[str, Any]:
        peers = self.scheduler.workers
        targets = list(peers) if workers is None else [w for w in workers if w in peers]

        async def one(address: str) -> Any:
            try:
                return await peers[address].request(op, **kwargs)
            except Exception as e:  # noqa: BLE001 - a worker that cannot answer contributes nothing
                logger.info("no %s from %s: %s", op, address, e)
                return None

        replies = await asyncio.gather(*(one(a) for a in targets))
        return {a: r for a, r in zip(targets, replies) if r is not None}

    async def profile(
        self, peer: Peer, key: str | None = None, start: float | None = None, stop: float | None = None,
        workers: list | None = None, merge_workers: bool = True, server: bool = False, scheduler: bool = False,
    ) -> dict:
        """The profile of [`start`, `stop`]: the scheduler's own (`scheduler`), else the
        workers' task threads (or their event loops with `server`), merged or by worker."""
        if scheduler:
            if self.sampler is None:
                return profile.create()
            return self.sampler.get_profile(start, stop, server=True)
        trees = await self._ask(workers, "profile", start=start, stop=stop, key=key, server=server)
        if merge_workers:
            return profile.merge(*trees.values())
        return trees

    async def memory_history(
        self, peer: Peer, start: float | None = None, stop: float | None = None, workers: list | None = None
    ) -> dict:
        """`{worker: [(time, rss), ...]}` in [`start`, `stop`]."""
        return await self._ask(workers, "memory_history", start=start, stop=stop)

