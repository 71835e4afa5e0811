"""The scheduler's read-only queries: `identity` (and the worker figures of
`metrics_of`), `who_has`, `has_what`, `nthreads`, `processing`, `story`, `task_spec`,
and `run_on_scheduler` (the one request that runs a client's function here). A mixin of
`shoal.scheduler.server.Scheduler`.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.rpc import Peer


class Queries:
    """The query side of `Scheduler` (see the module docstring)."""

    def identity(self) -> dict:
        st = self.state
        workers = {}
        for ws in st.workers.values():
            workers[ws.address] = {
                "type": "Worker",
                "id": ws.name,
                "host": ws.host,
                "name": ws.name,
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "resources": ws.resources,
                "local_directory": ws.local_directory,
                "nanny": ws.nanny,
                "pid": ws.pid,
                "status": "paused" if ws.paused else "running",
                "services": {},
                "last_seen": time.time(),
                "metrics": self.metrics_of(ws),
            }
        return {
            "type": "Scheduler",
            "id": self.id,
            "address": self.address,
            "services": {"dashboard": self.dashboard.port} if self.dashboard is not None else {},
            "started": self.started,
            "n_workers": len(workers),
            "total_threads": sum(w["nthreads"] for w in workers.values()),
            "total_memory": sum(w["memory_limit"] or 0 for w in workers.values()),
            "workers": workers,
        }

    def metrics_of(self, ws: Any) -> dict:
        """A worker's figures as distributed's users know them: `memory` (process RSS),
        `managed_bytes` (results held, on disk too), `spilled_bytes` (`memory`: their
        in-memory size, `disk`: bytes on disk), and the split of process memory into
        `managed` (in memory), `unmanaged` (RSS minus that) and `spilled`."""
        reported = self.worker_metrics.get(ws.address) or {}
        managed_total = ws.nbytes
        spilled = reported.get("spilled_bytes") or {"memory": 0, "disk": 0}
        rss = reported.get("memory", 0)
        managed = max(managed_total - spilled.get("memory", 0), 0)
        out = dict(reported)
        out.update(
            executing=len(ws.processing), in_memory=len(ws.has_what), memory=rss, managed_bytes=managed_total,
            spilled_bytes=spilled, managed=managed, unmanaged=max(rss - managed, 0), spilled=spilled.get("memory", 0),
        )  # fmt: skip
        return out

    async def _identity(self, peer: Peer, n_workers: int = -1) -> dict:
        info = self.identity()
        if n_workers is not None and n_workers >= 0:
            info["workers"] = dict(list(info["workers"].items())[:n_workers])
        return info

    async def _who_has(self, peer: Peer, keys: Any = None) -> dict:
        tasks = self.state.tasks
        if keys is None:
            keys = list(tasks)
        out = {}
        for key in keys:
            ts = tasks.get(key)
            out[key] = [w.address for w in ts.who_has] if ts is not None else []
        return out

    def select_workers(self, workers: Any) -> list:
        """The `SchedWorker`s named by `workers` (addresses or names; None: all), in
        that order; unknown names are skipped."""
        st = self.state
        if workers is None:
            return list(st.workers.values())
        out = []
        for w in workers:
            ws = st.workers.get(w)
            if ws is None:
                ws = next((x for x in st.workers.values() if x.name == w or str(x.name) == str(w)), None)
            if ws is not None:
                out.append(ws)
        return out

    async def _has_what(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: [ts.key for ts in ws.has_what] for ws in self.select_workers(workers)}

    async def _nthreads(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: ws.nthreads for ws in self.select_workers(workers)}

    async def _processing(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: [ts.key for ts in ws.processing] for ws in self.select_workers(workers)}

    async def _story(self, peer: Peer, keys: Any = ()) -> list:
        return [list(e) for e in self.state.story(*keys)]

    async def _task_spec(self, peer: Peer, key: Any, blame: bool = False) -> dict:
        """A task's opaque spec and its dependencies (those still known), for replaying it
        locally; with `blame`, the task whose failure `key` inherits."""
        ts = self.state.tasks.get(key)
        if ts is None:
            raise KeyError(f"task {key!r} is not known to the scheduler (released or never submitted)")
        if blame and ts.exception_blame is not None:
            ts = ts.exception_blame
        if ts.spec is None:
            raise ValueError(f"{ts.key!r} is data placed by a client: there is no task to run")
        known = self.state.tasks
        return {
            "key": ts.key,
            "func": ts.func,
            "spec": ts.run_spec,
            "deps": [d.key for d in ts.dependencies],
            "missing": [d.key for d in ts.dependencies if known.get(d.key) is not d],
        }

    async def _run_on_scheduler(self, peer: Peer, function: Pickled, args: Pickled, wait: bool = True) -> Pickled:
        func = loads(function)
        a, kw = loads(args)
        if "dask_scheduler" in _params(func):
            kw["dask_scheduler"] = self
        result = func(*a, **kw)
        if inspect.isawaitable(result):
            if not wait:
                self.spawn(result)
                return dumps(None)
            result = await result
        return dumps(result)


def _params(func: Any) -> Any:
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
