"""The worker's introspection and remote calls: `run` (`Client.run`), `call_stack`,
`story`, `versions`, `dump_state`, logs, the profiler's trees and memory history, the
task stream, hardware benchmarks and `echo`. A mixin of `shoal.worker.server.Worker`.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import traceback as tb_module
from typing import Any

import msgpack

from shoal import _gc, config, log_buffer
from shoal import profile as profile_mod
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.protocol.tracebacks import shorten
from shoal.rpc import Peer
from shoal.versions import PACKAGES, versions_report
from shoal.worker.execution import as_coroutine


class Admin:
    """The introspection side of `Worker` (see the module docstring)."""

    async def _echo(self, peer: Peer, data: Any = None) -> Any:
        return data

    def _get_logs(self, peer: Peer, n: int | None = None) -> list:
        """This process's recent log lines, newest first (`shoal.log_buffer`)."""
        return log_buffer.recent(n)

    async def _benchmark_disk(self, peer: Peer) -> dict:
        from shoal import benchmarking

        return await asyncio.to_thread(benchmarking.benchmark_disk, self.local_directory)

    async def _benchmark_memory(self, peer: Peer) -> dict:
        from shoal import benchmarking

        return await asyncio.to_thread(benchmarking.benchmark_memory)

    async def _benchmark_network(self, peer: Peer, address: str) -> dict:
        """Bandwidth to the worker at `address`, by message size."""
        from shoal import benchmarking

        assert self.pool is not None
        return await benchmarking.benchmark_network(await self.pool.get(address))

    async def _dump_state(self, peer: Peer, exclude: Any = ()) -> dict:
        from shoal.worker.dump import worker_state

        return worker_state(self, exclude)

    async def _story(self, peer: Peer, keys: Any = ()) -> list:
        """This worker's story entries of these keys or stimulus ids."""
        return [list(e) for e in self.state.story(*keys)] if self.state is not None else []

    async def _versions(self, peer: Peer, packages: Any = None) -> dict:
        report = versions_report(packages)
        versions = self.registered_versions
        report["packages"].update({name: versions[name] for name in PACKAGES if name in versions})  # what this worker registered with
        return report

    async def _call_stack(self, peer: Peer, keys: Any = None) -> dict:
        """`{key: [formatted frames]}` of the tasks executing right now (only `keys`)."""
        wanted = None if keys is None else set(keys)
        with _gc.paused():  # see shoal.profile.Sampler.sample: no collection inside
            frames = sys._current_frames()
        out = {}
        for ident, key in list(self._running.items()):
            frame = frames.get(ident)
            if frame is None or (wanted is not None and key not in wanted):
                continue
            out[key] = tb_module.format_stack(frame)
        return out

    async def _run(self, peer: Peer, function: Pickled, args: Pickled, wait: bool = True) -> Pickled:
        func = loads(function)
        a, kw = loads(args)
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        if "dask_worker" in params:
            kw["dask_worker"] = self
        result = func(*a, **kw)
        if inspect.isawaitable(result):
            if not wait:
                self.spawn(as_coroutine(result))
                return dumps(None)
            result = await result
        return dumps(result)

    async def _profile(
        self, peer: Peer, start: float | None = None, stop: float | None = None, key: str | None = None,
        server: bool = False,
    ) -> dict:
        """The merged profile tree of [`start`, `stop`]: the task threads' (only tasks of
        prefix `key`), or the event loop's with `server` (see `shoal.profile`)."""
        if self.profiler is None:
            return profile_mod.create()
        return self.profiler.get_profile(start, stop, key, server)

    async def _memory_history(self, peer: Peer, start: float | None = None, stop: float | None = None) -> list:
        """`[(time, rss)]` samples of this worker process in [`start`, `stop`]."""
        if self.profiler is None:
            return []
        return self.profiler.get_memory(start, stop)

    async def _task_stream(
        self, peer: Peer, since: int | None = None, start: float | None = None, stop: float | None = None,
        count: int | None = None,
    ) -> dict:
        """Task-stream records (see `WorkerState.task_stream`) as dicts: those with index
        >= `since`, whose compute ended in [`start`, `stop`], at most the newest `count`;
        `dropped`: how many records the ring buffer no longer holds that the request would
        have covered (the records evicted since `since`; without `since`, all evicted
        ones unless the oldest record kept is older than `start`); `oldest`: when the
        compute of the oldest record held ended (every evicted one ended before)."""
        st = self.state
        assert st is not None
        records = list(st.task_stream)
        total = st.task_stream_count
        evicted = total - len(records)
        oldest = records[0][3] if records else None  # evicted records all ended before
        if since is not None:
            dropped = max(0, evicted - since)
            records = records[max(0, since - evicted) :]
        else:
            dropped = evicted if start is None or oldest is None or oldest >= start else 0
        if start is not None:
            records = [r for r in records if r[3] >= start]
        if stop is not None:
            records = [r for r in records if r[3] <= stop]
        if count is not None:
            if 0 <= count <= len(records):
                dropped = 0  # the newest `count` are all still here
            records = records[-count:] if count > 0 else []
        addr = self.address
        return {
            "count": total, "dropped": dropped, "oldest": oldest,
            "records": [stream_record(r, addr) for r in records],
        }  # fmt: skip


def stream_record(r: tuple, worker: str) -> dict:
    key, thread, start, stop, status, nbytes, type_name, transfers, error, stimulus_id, metadata = r
    startstops = [
        {"action": "transfer", "start": a, "stop": b, "source": src, "nbytes": n} for a, b, src, n in transfers or ()
    ]
    startstops.append({"action": "compute", "start": start, "stop": stop})
    rec = {
        "key": key, "worker": worker, "thread": thread, "status": status, "startstops": startstops,
        "stimulus_id": stimulus_id, "metadata": wire_metadata(metadata),
    }  # fmt: skip
    if error is None:
        rec["nbytes"] = nbytes
        rec["type"] = rec["typename"] = type_name
    else:
        rec["exception_text"], frames = error
        frames = shorten(frames, config.get("admin.traceback.shorten") or [])  # the task's own frames
        rec["traceback_text"] = "".join(f'  File "{f}", line {n}, in {name}\n' for f, n, name in frames)
    return rec


def wire_metadata(metadata: dict | None) -> dict:
    """A task's metadata as the task stream sends it: values msgpack cannot carry become
    their `repr` (one odd value must not cost the whole stream)."""
    if not metadata:
        return {}
    out = {}
    for k, v in metadata.items():
        try:
            msgpack.packb(v)
        except (TypeError, ValueError, OverflowError):
            v = repr(v)
        out[k if isinstance(k, (str, int)) else repr(k)] = v
    return out
