"""Progress bars and task-metadata collections on the scheduler: the ``progress_*`` and
``task_metadata_*`` request handlers, a scheduler extension (`extension.py`).

Each open bar or collection is a read-only observer of the state machine
(`observers.py`: `ProgressWatch`, `MetadataWatch`) registered while it is open and dropped
when it ends or its client goes away (the `remove_client` hook). Nothing runs on the
scheduler on a bar's behalf between transitions, and nothing is sent per task: the client
long-polls `progress_poll`, answered at once when the watch finishes.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from shoal.rpc import Peer
from shoal.scheduler.extension import SchedulerExtension
from shoal.scheduler.observers import MetadataWatch, ProgressWatch

__all__ = ["WatchServer"]

OPS = ("progress_start", "progress_poll", "progress_stop", "task_metadata_start", "task_metadata_stop")


class WatchServer(SchedulerExtension):
    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        #: open watches by id: (watch, its "finished or removed" event, owning client)
        self.watches: dict[int, tuple[Any, asyncio.Event, Any]] = {}
        self._ids = itertools.count(1)

    def handlers(self) -> dict[str, Any]:
        return {op: getattr(self, op) for op in OPS}


    def _add_watch(self, watch: Any, owner: Any) -> int:
        wid = next(self._ids)
        event = asyncio.Event()
        self.watches[wid] = (watch, event, owner)
        self.scheduler.state.observers.append(watch)
        return wid

    def _remove_watch(self, wid: int) -> Any:
        entry = self.watches.pop(wid, None)
        if entry is None:
            return None
        watch, event, _ = entry
        self.scheduler.state.observers.remove(watch)
        event.set()  # wake a poll waiting on it
        return watch

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        for wid in [w for w, (_, _, owner) in self.watches.items() if owner == client_id]:
            self._remove_watch(wid)

    async def progress_start(self, peer: Peer, keys: Any = (), complete: bool = True) -> dict:
        """Watch the progress of `keys` and everything they still need; poll it with
        `progress_poll`, end it with `progress_stop` (or by disconnecting)."""
        watch = ProgressWatch(self.scheduler.state.tasks, keys, complete=complete, owner=peer.ident)
        wid = self._add_watch(watch, peer.ident)
        watch.on_finish = self.watches[wid][1].set
        return {"id": wid, "groups": watch.counts(), "finished": watch.finished}

    async def progress_poll(self, peer: Peer, watch_id: int, wait: float = 0.0) -> dict:
        """Counts of a progress watch, after waiting up to `wait` seconds for it to
        finish. A finished watch is removed."""
        entry = self.watches.get(watch_id)
        if entry is None:
            raise KeyError(f"no progress watch {watch_id}")
        watch, event, _ = entry
        if wait > 0 and not watch.finished:
            try:
                await asyncio.wait_for(event.wait(), wait)
            except asyncio.TimeoutError:
                pass
        if watch.finished:
            self._remove_watch(watch_id)
        return {"id": watch_id, "groups": watch.counts(), "finished": watch.finished}

    async def progress_stop(self, peer: Peer, watch_id: int) -> None:
        self._remove_watch(watch_id)

    async def task_metadata_start(self, peer: Peer) -> int:
        return self._add_watch(MetadataWatch(), peer.ident)

    async def task_metadata_stop(self, peer: Peer, watch_id: int) -> dict:
        watch = self._remove_watch(watch_id)
        if watch is None:
            raise KeyError(f"no task-metadata collection {watch_id}")
        return {"metadata": watch.metadata, "state": watch.state}
