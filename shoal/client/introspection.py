"""Looking into the cluster: task stream, profiles, call stacks, versions, stories and
cluster dumps, hardware benchmarks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from shoal.client.futures import Future
from shoal.versions import get_versions


class IntrospectionMethods:
    """The client's diagnostic queries (a mixin of `Client`)."""

    def get_task_stream(
        self,
        start: Any = None,
        stop: Any = None,
        count: int | None = None,
        plot: Any = False,
        filename: str = "task-stream.html",
        bokeh_resources: Any = None,
    ) -> Any:
        """Records of the tasks the workers ran: `key, worker, thread, status, nbytes, type,
        startstops` (see `shoal.diagnostics.task_stream`). `start`/`stop` are epoch seconds
        or durations before now (``"60s"``); `count` keeps the newest N. `plot=True` also
        returns a figure (an HTML timeline); `plot="save"` writes it to `filename` too.
        Warns when workers' ring buffers (`shoal.worker.task-stream-length`) no longer held
        some of the requested records."""
        from shoal.diagnostics.task_stream import fetch_task_stream, warn_if_dropped

        def finish(reply: dict) -> Any:
            warn_if_dropped(reply["dropped"], stacklevel=3)  # in the caller's thread, at its line
            return _plot_task_stream(reply["records"], plot, filename)

        if self.asynchronous:

            async def call() -> Any:
                return finish(await fetch_task_stream(self, start, stop, count))

            return call()
        return finish(self.sync(fetch_task_stream, self, start, stop, count))

    async def _profile(
        self, key: Any = None, start: Any = None, stop: Any = None, workers: Any = None, merge_workers: bool = True,
        server: bool = False, scheduler: bool = False,
    ) -> dict:
        from shoal.diagnostics.task_stream import parse_time

        assert self.scheduler_comm is not None
        if isinstance(workers, str):
            workers = [workers]
        return await self.scheduler_comm.request(
            "profile", key=key, start=parse_time(start), stop=parse_time(stop),
            workers=None if workers is None else list(workers), merge_workers=merge_workers, server=server,
            scheduler=scheduler,
        )  # fmt: skip

    def profile(
        self,
        key: Any = None,
        start: Any = None,
        stop: Any = None,
        workers: Any = None,
        merge_workers: bool = True,
        plot: Any = False,
        filename: str | None = None,
        server: bool = False,
        scheduler: bool = False,
    ) -> Any:
        """The statistical profile of where the workers' task threads spent their time:
        a call tree ``{"count", "children", "description", "identifier"}`` (see
        `shoal.profile`), merged over `workers` (all by default; ``merge_workers=False``
        gives ``{worker: tree}``). `key` keeps tasks of that key prefix; `start`/`stop`
        are epoch seconds, datetimes or durations before now (``"60s"``), matched to whole
        cycles (`shoal.worker.profile.cycle`, 1 s) that overlap the window. `server=True`
        profiles the workers' event loops instead, `scheduler=True` the scheduler's.
        With `plot` (or a `filename`, where the page is written) returns ``(tree, figure)``,
        the figure an offline HTML icicle graph."""

        async def call() -> Any:
            state = await self._profile(key, start, stop, workers, merge_workers, server, scheduler)
            name = filename
            if not plot and not name:
                return state
            from shoal.diagnostics.profile_plot import ProfileFigure

            tree = state
            if not merge_workers and not scheduler:
                from shoal.profile import merge

                tree = merge(*state.values())
            figure = ProfileFigure(tree)
            if plot == "save" and not name:
                name = "dask-profile.html"
            if name:
                figure.save(name)
            return state, figure

        return self.sync(call)

    def call_stack(self, futures: Any = None, keys: Any = None) -> Any:
        """`{worker: {key: [formatted frames]}}` for the tasks executing right now (only
        those of `futures` / `keys` when given)."""
        wanted = None
        if futures is not None or keys is not None:
            wanted = (self._keys_of(futures) if futures is not None else []) + list(keys or ())

        async def call() -> dict:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("call_stack", keys=wanted)
            return {w: {k: list(frames) for k, frames in stacks.items()} for w, stacks in reply.items()}

        return self.sync(call)

    async def _warn_version_mismatch(self) -> None:
        """Warn (once, when connecting) if key packages differ across the cluster."""
        from shoal.versions import format_mismatches, mismatches

        assert self.scheduler_comm is not None
        try:
            theirs = await self.scheduler_comm.request("key_versions")
        except Exception:  # noqa: BLE001 - an older scheduler without the handler: nothing to compare
            return
        found = mismatches(get_versions(), theirs["scheduler"], theirs["workers"])
        if found:
            import warnings

            warnings.warn(format_mismatches(found), UserWarning, stacklevel=2)

    def get_versions(self, check: bool = False, packages: Any = None) -> Any:
        """`{"scheduler": ..., "workers": {address: ...}, "client": ...}`, each
        `{"host": {...}, "packages": {...}}`; with `check`, `ValueError` (and a table of
        the differences) when key packages (or `packages`) differ across the cluster."""
        from shoal.versions import flat, format_mismatches, mismatches, versions_report

        wanted = list(packages or ())

        async def call() -> dict:
            assert self.scheduler_comm is not None
            result = dict(await self.scheduler_comm.request("versions", packages=wanted))
            result["workers"] = dict(result["workers"])
            result["client"] = versions_report(wanted)
            if check:
                workers = {a: flat(r) for a, r in result["workers"].items()}
                found = mismatches(flat(result["client"]), flat(result["scheduler"]), workers, wanted)
                if found:
                    raise ValueError(format_mismatches(found))
            return result

        return self.sync(call)

    def story(self, *keys_or_stimuli: Any, on_error: str = "raise") -> Any:
        """The cluster-wide log of these keys (or futures, or stimulus ids): scheduler
        and worker entries `(source, key, start, finish, detail, stimulus_id, time)`,
        `source` being "scheduler" or a worker address, sorted by (wall-clock) time.
        `on_error="ignore"` leaves out workers that cannot answer."""
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore'; got {on_error!r}")
        keys = [k.key if isinstance(k, Future) else k for k in keys_or_stimuli]

        async def call() -> list:
            assert self.scheduler_comm is not None
            entries = await self.scheduler_comm.request("cluster_story", keys=keys, on_error=on_error)
            return [tuple(e) for e in entries]

        return self.sync(call)

    def dump_cluster_state(self, filename: str = "dask-cluster-dump", write_from_scheduler: bool | None = None,
                           exclude: Any = (), format: str = "msgpack", **storage_options: Any) -> Any:  # fmt: skip
        """Write the scheduler's and every worker's state plus versions to
        ``filename.msgpack.gz`` (or ``.yaml`` with `format="yaml"`, needs PyYAML); read it
        back with `shoal.cluster_dump.load_cluster_dump`. `write_from_scheduler` (default:
        whether `filename` is a URL) has the scheduler write it instead of this process."""
        from shoal import cluster_dump

        if format not in cluster_dump.FORMATS:
            raise ValueError(f"Unsupported format {format!r}; expected one of {list(cluster_dump.FORMATS)}")
        if format == "yaml":
            cluster_dump.require_yaml()  # fail here, before collecting anything, without PyYAML
        filename = os.fspath(filename)  # a str or a pathlib.Path
        if write_from_scheduler is None:
            write_from_scheduler = "://" in filename
        exclude = list(exclude)

        async def call() -> None:
            assert self.scheduler_comm is not None
            if write_from_scheduler:
                await self.scheduler_comm.request(
                    "dump_cluster_state", exclude=exclude, filename=filename, format=format,
                    storage_options=storage_options,
                )  # fmt: skip
                return
            state = await self.scheduler_comm.request("dump_cluster_state", exclude=exclude)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: cluster_dump.write_state(state, filename, format, **storage_options))

        return self.sync(call)

    def benchmark_hardware(self) -> Any:
        """Bandwidth in bytes/s by transfer size: `{"disk": {size: bw}, "memory": {...},
        "network": {...}}`, averaged over the workers (network: between pairs of
        workers); empty dicts without workers. Takes several seconds
        (`shoal.benchmarking`)."""
        return self._request("benchmark_hardware")


def _plot_task_stream(records: list, plot: Any, filename: str) -> Any:
    if not plot:
        return records
    from shoal.diagnostics.task_stream import TaskStreamFigure

    figure = TaskStreamFigure(records)
    if plot == "save":
        figure.save(filename)
    return records, figure

