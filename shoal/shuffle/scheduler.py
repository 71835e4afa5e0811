"""The scheduler side of the shuffle service: an I/O shell around `ShuffleBook`.

It answers the workers' `shuffle_get` (the current run of a shuffle, created with its
owners on first ask; each output task is then pinned to its owner with a
`SetRestrictions` event), restarts a run when one of its owners leaves (`Recompute` of
its transfers and barrier: the state machine starts them over, their inputs recomputed
from lineage if released), and tells every worker to drop a run's buffers and files
(`shuffle_forget`) when the run is over: its barrier released (all outputs done, or the
computation cancelled) or erred, the run restarted, or the scheduler restarted.

It watches barriers through a read-only observer of the state machine
(`SchedulerState.observers`); decisions are taken after the stimulus, never inside it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shoal.protocol.serialize import Pickled, loads
from shoal.scheduler.events import Recompute, SetRestrictions
from shoal.scheduler.extension import SchedulerExtension
from shoal.shuffle.book import ShuffleBook, ShuffleClosed, ShuffleRun, ShuffleSpec

__all__ = ["ShuffleSchedulerExtension", "spec_to_wire", "spec_from_wire"]

logger = logging.getLogger("shoal.shuffle")

#: barrier states after which a run's buffers are no longer needed
_OVER = frozenset(["released", "forgotten", "erred"])


def _key(k: Any) -> Any:
    return tuple(_key(p) for p in k) if isinstance(k, list) else k


def spec_to_wire(spec: ShuffleSpec) -> dict:
    return {
        "id": spec.id,
        "parts": list(spec.parts),
        "output_keys": list(spec.output_keys),
        "transfer_keys": list(spec.transfer_keys),
        "barrier_key": spec.barrier_key,
    }


def spec_from_wire(d: dict) -> ShuffleSpec:
    if not isinstance(d, dict) or not isinstance(d.get("id"), str):
        raise TypeError(f"not a shuffle spec: {d!r}")
    return ShuffleSpec(
        id=d["id"],
        parts=tuple(int(p) for p in d["parts"]),
        output_keys=tuple(_key(k) for k in d["output_keys"]),
        transfer_keys=tuple(_key(k) for k in d["transfer_keys"]),
        barrier_key=_key(d["barrier_key"]),
    )


class _BarrierWatch:
    """Observer: notes the shuffles whose barrier reached a final state."""

    __slots__ = ("book", "ended", "on_end")

    def __init__(self, book: ShuffleBook, on_end: Any):
        self.book = book
        self.ended: set[str] = set()
        #: called (no arguments) when the first barrier of a batch ends
        self.on_end = on_end

    def transition(self, ts: Any, start: str, stimulus_id: str) -> None:
        if ts.state in _OVER:
            sid = self.book.barriers.get(ts.key)
            if sid is not None:
                if not self.ended:
                    self.on_end()
                self.ended.add(sid)

    def new_keys(self, client_id: str, keys: Any) -> None:
        pass


class ShuffleSchedulerExtension(SchedulerExtension):
    """Scheduler extension ``"shuffle"`` (see `shoal.scheduler.extension`)."""

    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        self.book = ShuffleBook()
        #: observes the state machine only while some run is live (it costs a call
        #: per transition)
        self.watch = _BarrierWatch(self.book, self._sweep_soon)
        #: totals, for tests and metrics
        self.restarts = 0
        self.finished = 0
        self.asked = 0  # `shuffle_get` calls

    def handlers(self) -> dict[str, Any]:
        return {"shuffle_get": self.get, "shuffle_status": self.status, "shuffle_flush": self.flush}

    # ------------------------------------------------------------------ handlers

    def get(self, peer: Any, spec: dict) -> dict:
        """The current run of the shuffle: ``{"run_id", "owners"}`` (owners aligned
        with the spec's parts)."""
        self._sweep()
        self.asked += 1
        spec_ = spec_from_wire(spec)
        state = self.scheduler.state
        barrier = state.tasks.get(spec_.barrier_key)
        if spec_.id not in self.book.runs and (barrier is None or barrier.state in _OVER):
            # a transfer still running after the shuffle was cancelled (or finished):
            # no new run for it, or its buffers would never be freed
            raise ShuffleClosed(f"shuffle {spec_.id} is no longer wanted")
        workers = [a for a, ws in state.workers.items() if not getattr(ws, "retiring", False)] or list(state.workers)
        run, created = self.book.get_or_create(spec_, workers)
        if created:
            self._watching(True)
            logger.debug("shuffle %s run %d over %d workers", spec_.id, run.run_id, len(run.participants))
            self._stimulate("shuffle-owners", SetRestrictions, spec_.pins(run.owners))
        return {"run_id": run.run_id, "owners": [run.owners[p] for p in spec_.parts]}

    async def flush(self, peer: Any, id: str, run_id: int) -> None:
        """(the barrier) Return once every worker stored what it sent for run `run_id`;
        raise the first error a worker reports. A worker gone meanwhile is skipped: the
        transfers it ran are recomputed from lineage (the barrier with them)."""
        if self.status(peer, id) != run_id:
            raise ShuffleClosed(f"shuffle {id} run {run_id} was restarted")
        replies = await self.scheduler.broadcast("shuffle_flush", id=id, run_id=run_id)
        for address, (ok, value) in replies.items():
            if ok or address not in self.scheduler.state.workers:
                continue
            error = loads(value) if isinstance(value, Pickled) else RuntimeError(str(value))
            raise error

    def status(self, peer: Any, id: str) -> int | None:
        """The current run id of shuffle `id` (None: no run)."""
        self._sweep()
        run = self.book.runs.get(id)
        return None if run is None else run.run_id

    # ------------------------------------------------------------------ hooks

    def remove_worker(self, address: str, reason: str = "", stimulus_id: str = "") -> None:
        for restart in self.book.remove_worker(address):
            self.restarts += 1
            run = restart.run
            logger.info(
                "shuffle %s run %d lost its owner %s (%s); restarting", run.spec.id, run.run_id, address, reason
            )
            self._forget_everywhere(run)
            self._stimulate("shuffle-restart", Recompute, restart.recompute, f"shuffle owner {address} left")
        if not self.book.runs:
            self._watching(False)

    def restart(self, stimulus_id: str = "") -> None:
        """`Scheduler.restart` forgot every task: every run is over."""
        for sid in list(self.book.runs):
            run = self.book.finish(sid)
            if run is not None:
                self._forget_everywhere(run)
        self._watching(False)

    def _sweep_soon(self) -> None:
        """After the stimulus being handled (observers must not act inside it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (tests): the next handler sweeps
            return
        loop.call_soon(self._sweep)

    def close(self) -> None:
        self._watching(False)

    def _watching(self, on: bool) -> None:
        observers = self.scheduler.state.observers
        if on and self.watch not in observers:
            observers.append(self.watch)
        elif not on and self.watch in observers:
            observers.remove(self.watch)

    # ------------------------------------------------------------------ internals

    def _sweep(self) -> None:
        """Forget the runs whose barrier ended (and stayed ended)."""
        watch = self.watch
        if not watch.ended:
            return
        tasks = self.scheduler.state.tasks
        ended, watch.ended = watch.ended, set()
        for sid in ended:
            run = self.book.runs.get(sid)
            if run is None:
                continue
            ts = tasks.get(run.spec.barrier_key)
            if ts is None or ts.state in _OVER:
                self.book.finish(sid)
                self.finished += 1
                self._forget_everywhere(run)
        if not self.book.runs:
            self._watching(False)

    def _forget_everywhere(self, run: ShuffleRun) -> None:
        sched = self.scheduler
        for address in list(sched.state.workers):
            peer = sched.workers.get(address)
            if peer is None:
                continue
            try:
                peer.notify("shuffle_forget", id=run.spec.id, run_id=run.run_id)
            except Exception as e:  # a worker on its way out
                logger.debug("could not tell %s to forget shuffle %s: %s", address, run.spec.id, e)

    def _stimulate(self, prefix: str, event: Any, *args: Any) -> None:
        sched = self.scheduler
        sched.stimulate(event(sched.new_stimulus_id(prefix), *args))
