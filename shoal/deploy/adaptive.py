"""`Adaptive`: grows and shrinks a cluster with its load (`cluster.adapt(...)`).

A control loop on the cluster's event loop: every `interval` it asks the scheduler how
many workers the work needs (`Scheduler.adaptive_target`: the queued and processing tasks
times their observed average duration, to be done in `target_duration`), clamps that to
[`minimum`, `maximum`], and lets the pure `scheduler.adaptive.recommendations` decide:
scale up at once, or close idle workers only after `wait_count` consecutive
recommendations. Closing goes through `retire_workers`, which moves the data only those
workers hold before they go, then `cluster.scale_down`. The cluster owns it: closing the
cluster, or calling `adapt()` again, stops it.

The scheduler is asked directly when it runs in this process (`SpecCluster`), else over
the cluster's connection (`cluster.scheduler_comm`: `SubprocessCluster`, `SSHCluster`,
third-party `Cluster` subclasses), so its answers may be awaitables or values.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import time
from typing import Any

from shoal import config
from shoal.scheduler import adaptive as policy
from shoal.utils import parse_timeout

logger = logging.getLogger("shoal.deploy.adaptive")


class Adaptive:
    """Adapt `cluster`'s workers to its load. See the module docstring."""

    def __init__(
        self,
        cluster: Any,
        interval: Any = None,
        minimum: float | None = None,
        maximum: float | None = None,
        wait_count: int | None = None,
        target_duration: Any = None,
        worker_key: Any = None,
        **kwargs: Any,
    ):
        self.cluster = cluster
        self.interval = parse_timeout(interval if interval is not None else config.get("adaptive.interval"))
        self.minimum = int(minimum if minimum is not None else config.get("adaptive.minimum"))
        maximum = maximum if maximum is not None else config.get("adaptive.maximum")
        if not (maximum == math.inf or float(maximum).is_integer()):
            raise ValueError(f"maximum must be an integer or inf, got {maximum!r}")
        self.maximum: float = maximum if maximum == math.inf else int(maximum)
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) must not exceed maximum ({self.maximum})")
        self.wait_count = int(wait_count if wait_count is not None else config.get("adaptive.wait-count"))
        duration = target_duration if target_duration is not None else config.get("adaptive.target-duration")
        self.target_duration = parse_timeout(duration)
        self.worker_key = worker_key
        self._workers_to_close_kwargs = kwargs
        self.close_counts: dict[Any, int] = {}
        self.log: collections.deque = collections.deque(maxlen=1000)
        self._adapting = False
        self._task: asyncio.Task | None = None
        self.periodic_callback = None
        if not self.interval or cluster is None:
            self.state = "inactive"
            return
        self.state = "starting"
        loop = cluster.loop
        if loop is None:
            raise RuntimeError("the cluster has no event loop yet; start it (await cluster) before adapt()")
        loop.call_soon_threadsafe(self._start_loop)

    def _start_loop(self) -> None:
        if self.state == "starting":
            self.state = "running"
            self._task = asyncio.ensure_future(self._run())
            self.periodic_callback = self._task

    async def _run(self) -> None:
        while self.state == "running":
            if self.cluster.status not in ("running", "starting"):
                self.stop(reason="cluster-not-running")
                return
            try:
                await self.adapt()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("adaptive scaling failed; trying again in %s s", self.interval)
            await asyncio.sleep(self.interval)  # a control loop: runs every interval by design

    def stop(self, reason: str = "unknown") -> None:
        """Stop adapting (idempotent). The cluster keeps its current workers."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        logger.info("Adaptive stopped: %s", reason)
        task = self._task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def wait_stopped(self) -> None:
        """Wait until the loop has ended (after `stop`), from the cluster's loop."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ one round

    @property
    def plan(self) -> set:
        return self.cluster.plan

    @property
    def requested(self) -> set:
        return self.cluster.requested

    @property
    def observed(self) -> set:
        return self.cluster.observed

    @property
    def scheduler(self) -> Any:
        """The scheduler itself when it runs in this process, else `cluster.scheduler_comm`."""
        scheduler = getattr(self.cluster, "scheduler", None)
        if hasattr(scheduler, "adaptive_target"):
            return scheduler
        return self.cluster.scheduler_comm

    @property
    def loop(self) -> Any:
        return self.cluster.loop

    async def target(self) -> int:
        """Workers the scheduler says the current work needs."""
        return await _value(self.scheduler.adaptive_target(target_duration=self.target_duration))

    async def safe_target(self) -> int:
        n = await self.target()
        return int(min(max(n, self.minimum), self.maximum))

    async def workers_to_close(self, target: int) -> list:
        return await _value(
            self.scheduler.workers_to_close(target=target, attribute="name", **self._workers_to_close_kwargs)
        )

    async def recommendations(self, target: int) -> dict:
        plan = self.plan
        closable = await self.workers_to_close(target) if target < len(plan) else []
        return policy.recommendations(
            target, plan, self.requested, self.observed, closable, self.close_counts, self.wait_count
        )

    async def scale_up(self, n: int) -> None:
        result = self.cluster.scale(n)
        if result is not None:
            await result

    async def scale_down(self, workers: list) -> None:
        """Retire these workers (their data moves first), then drop them from the cluster.
        Workers the scheduler would not retire (their data has nowhere to go) stay."""
        if not workers:
            return
        observed = self.cluster.names_to_addresses(workers)
        gone = [w for w in workers if w not in observed]  # asked for, never arrived
        if observed:
            retired = await self.scheduler.retire_workers(workers=list(observed.values()), close_workers=True)
            gone += [name for name, address in observed.items() if address in retired]
        for name in gone:
            self.close_counts.pop(name, None)
        if gone:
            await _value(self.cluster.scale_down(gone))

    async def adapt(self) -> None:
        """One round: compute the target, act on the recommendation (not re-entrant)."""
        if self._adapting:
            return
        self._adapting = True
        try:
            await _value(self.cluster.prune_closed())
            target = await self.safe_target()
            rec = await self.recommendations(target)
            if rec["status"] == "same":
                return
            self.log.append((time.time(), dict(rec)))
            if rec["status"] == "up":
                await self.scale_up(rec["n"])
            elif rec["status"] == "down":
                await self.scale_down(rec["workers"])
        finally:
            self._adapting = False

    def __repr__(self) -> str:
        return f"<Adaptive minimum={self.minimum} maximum={self.maximum} state={self.state}>"

    def __del__(self) -> None:
        if getattr(self, "state", "stopped") in ("starting", "running"):
            try:
                self.stop(reason="adaptive-deleted")
            except Exception:  # noqa: BLE001 - never raise at garbage collection
                pass


async def _value(result: Any) -> Any:
    """`result`, awaited if it is an awaitable (a remote scheduler's answer)."""
    return (await result) if inspect.isawaitable(result) else result
