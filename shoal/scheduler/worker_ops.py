"""What the scheduler does with its workers as a group: adaptive scaling's figures
(`adaptive_target`, `workers_to_close`; the policy is `adaptive.py`), retiring and their
logs (through `admin.py`), liveness (heartbeats and `worker-ttl`, policy in
`liveness.py`), `broadcast` of a worker operation, and the task stream gathered from the
workers' ring buffers. A mixin of `shoal.scheduler.server.Scheduler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from shoal.protocol.serialize import dumps
from shoal.rpc import Peer
from shoal.scheduler import adaptive
from shoal.scheduler.liveness import check_interval, expired

logger = logging.getLogger("shoal.scheduler")


class WorkerOps:
    """The worker-group side of `Scheduler` (see the module docstring)."""

    # ------------------------------------------------------------------ adaptive scaling

    def adaptive_target(self, target_duration: float = 5.0) -> int:
        """Workers the current work needs (`scheduler.adaptive.adaptive_target`)."""
        st = self.state
        workers = st.workers.values()
        n_pending = st.n_queued + len(st.unrunnable) + sum(len(ws.processing) for ws in workers)
        return adaptive.adaptive_target(
            n_pending, st.avg_duration, target_duration, len(st.workers), sum(ws.nthreads for ws in workers),
            sum(ws.nbytes for ws in workers), sum(ws.memory_limit or 0 for ws in workers),
        )  # fmt: skip

    def workers_to_close(self, target: int | None = None, n: int | None = None, attribute: str = "address") -> list:
        """Idle workers to close to come down to `target` workers (or `n` fewer; by default
        every idle worker), least data first, as addresses or (`attribute="name"`) names."""
        st = self.state
        if target is None:
            target = len(st.workers) - n if n is not None else 0
        chosen = adaptive.workers_to_close(
            [(ws.address, len(ws.processing), ws.nbytes, len(ws.has_what)) for ws in st.workers.values()], target
        )
        if attribute == "name":
            return [st.workers[a].name for a in chosen]
        return chosen

    async def retire_workers(self, workers: Any = None, **kwargs: Any) -> dict:
        """Move the data only these workers hold elsewhere, then close them (`admin.retire_workers`)."""
        return await self.admin.retire_workers(None, workers=workers, **kwargs)

    async def get_worker_logs(self, n: int | None = None, workers: Any = None, nanny: bool = False) -> dict:
        return await self.admin.get_worker_logs(None, n=n, workers=workers, nanny=nanny)

    async def _adaptive_target(self, peer: Peer, target_duration: float = 5.0) -> int:
        return self.adaptive_target(target_duration)

    async def _workers_to_close(
        self, peer: Peer, target: int | None = None, n: int | None = None, attribute: str = "address"
    ) -> list:
        return self.workers_to_close(target=target, n=n, attribute=attribute)

    def _heartbeat(self, peer: Peer, metrics: Any = None) -> None:
        """A worker saying it is alive (the packet itself updates `peer.last_seen`), with
        its memory figures (see `Worker.metrics`)."""
        if peer.role == "worker" and type(metrics) is dict and self.workers.get(peer.ident) is peer:
            self.worker_metrics[peer.ident] = metrics

    async def _watch_worker_ttl(self, ttl: float) -> None:
        """Remove workers not heard from for `ttl` seconds (see `liveness.py`)."""
        interval = check_interval(ttl)
        while self.status == "running":
            await asyncio.sleep(interval)
            now = time.monotonic()
            silent = expired({addr: peer.last_seen for addr, peer in self.workers.items()}, now, ttl)
            for addr in silent:
                peer = self.workers[addr]
                reason = f"worker-ttl: not heard from for {now - peer.last_seen:.1f} s (worker-ttl {ttl:g} s)"
                logger.warning("Removing worker %s: %s", addr, reason)
                self._exit_reasons[addr] = reason
                self.spawn(self._peer_gone(peer))

    async def _broadcast(self, peer: Peer, name: str, kwargs: dict, workers: Any = None) -> dict:
        return await self.broadcast(name, workers, **kwargs)

    async def broadcast(self, op: str, workers: Any = None, **kwargs: Any) -> dict:
        """Call worker operation `op` with `kwargs` on each worker of `workers` (addresses
        or names; None: all); return `{address: (ok, value)}` as the workers sent it (a
        worker that is gone or fails to answer: `(False, Pickled OSError)`)."""
        name = op
        targets = [ws.address for ws in self.select_workers(workers)]

        async def one(addr: str) -> tuple:
            wpeer = self.workers.get(addr)
            if wpeer is None:
                return (False, dumps(OSError(f"worker {addr} is gone")))
            try:
                reply = await wpeer.request_raw(name, **kwargs)
                return (reply.ok, reply.value)
            except Exception as e:
                return (False, dumps(OSError(f"worker {addr} failed to answer: {e}")))

        results = await asyncio.gather(*(one(a) for a in targets))
        return dict(zip(targets, results))


    async def _get_task_stream(self, peer: Peer, **kwargs: Any) -> dict:
        return await self.get_task_stream(**kwargs)

    async def get_task_stream(
        self, start: float | None = None, stop: float | None = None, count: int | None = None,
        since: dict | None = None,
    ) -> dict:
        """The task stream, fetched on demand from every worker's ring buffer (nothing is
        collected per task on the scheduler): records sorted by the end of their compute,
        at most the newest `count`; `since` ({worker: index}, from an earlier call's
        `counts`) keeps only records added after that call; `dropped` ({worker: n}) counts
        records in range that a worker's ring buffer no longer held. Workers that left took
        their records with them."""

        async def one(addr: str, wpeer: Peer) -> tuple[str, dict | None]:
            mark = None if since is None else since.get(addr, 0)
            try:
                reply = await wpeer.request("task_stream", since=mark, start=start, stop=stop, count=count)
            except Exception as e:
                logger.info("no task stream from %s: %s", addr, e)
                return addr, None
            return addr, reply

        replies = await asyncio.gather(*(one(a, p) for a, p in list(self.workers.items())))
        counts = {}
        dropped = {}
        oldest = {}
        records: list = []
        for addr, reply in replies:
            if reply is not None:
                counts[addr] = reply["count"]
                if reply.get("dropped"):
                    dropped[addr], oldest[addr] = reply["dropped"], reply.get("oldest")
                records.extend(reply["records"])
        records.sort(key=lambda r: r["startstops"][-1]["stop"])
        if count is not None:
            records = records[-count:] if count > 0 else []
            if len(records) == count:  # a worker's evicted records ended before its oldest
                cutoff = records[0]["startstops"][-1]["stop"] if records else float("inf")
                dropped = {a: n for a, n in dropped.items() if oldest[a] is not None and oldest[a] > cutoff}
        return {"counts": counts, "records": records, "dropped": dropped}
