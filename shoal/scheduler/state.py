"""The scheduler's whole truth, as a pure state machine.

Rules:

1. The only way in is `SchedulerState.handle_stimulus(*events) -> list[Instruction]`.
   Nothing else writes to the state; the I/O shell may read it to answer queries, and
   may register read-only `observers` (progress bars, `observers.py`) that are told of
   every transition and never change anything.
2. No asyncio, sockets, threads or wall clock here: the clock is passed in.
3. A task moves between states only along an edge of `_TRANSITIONS`; any other move is an
   `InvalidTransition` carrying the task's story.

Theory of operation. A task is born `released` when a client sends its spec. It becomes
`waiting` when some client wants it (or a wanted task depends on it); once every
dependency is in memory it is `queued`, a priority heap shared by all workers. At the end
of every stimulus the queue is drained into workers that have free *slots*: a worker takes
``nthreads * (1 + depth)`` tasks, where `depth` is how many tasks fit in a small time
budget per thread given the recent task durations (a few for slow tasks, up to a cap for
tiny ones), so workers never wait a round trip for their next task and never hoard work.
A task sent to a worker is `processing`; it ends `memory` or `erred`. Reference counting:
a task is `released` when no client wants it and no waiting dependent needs it, and
`forgotten` once nothing refers to it at all; released tasks keep their spec so lost
results can be recomputed from lineage.

States: released, waiting, queued, no-worker, processing, memory, erred, forgotten.

The machine is one class assembled from mixins, one concern each: `client_events.py`
(clients, holds and their messages), `worker_events.py` (workers, their messages and the
extensions' data and placement events), `transitions.py` (the table); this module holds
the door, what every handler shares, and the end of a stimulus (the queue drained into
free slots, steals, frees). The records are in `records.py`, the invariants in
`validate.py`.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from sys import intern
from typing import Any

from shoal.exceptions import InvalidTransition, ReentrantStimulus
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled
from shoal.scheduler import placement
from shoal.scheduler.client_events import ClientEvents
from shoal.scheduler.instructions import Instruction, ToClient, ToWorker
from shoal.scheduler.records import (
    ACTIVE,
    EMPTY,
    FIRE_AND_FORGET,
    MAX_PREFIXES,
    Recs,
    SchedClient,
    SchedTask,
    SchedWorker,
    with_member,
    without_member,
)
from shoal.scheduler.transitions import Transitions
from shoal.scheduler.validate import InvalidState, validate_state
from shoal.scheduler.worker_events import WorkerEvents
from shoal.stimulus import StateMachine
from shoal.utils import Key

__all__ = [
    "FIRE_AND_FORGET",
    "MAX_PREFIXES",
    "InvalidState",
    "InvalidTransition",
    "ReentrantStimulus",
    "SchedClient",
    "SchedTask",
    "SchedWorker",
    "SchedulerState",
]


class SchedulerState(ClientEvents, WorkerEvents, Transitions, StateMachine):
    """See the module docstring. `clock` returns seconds (monotonic)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        queue_seconds: float = 0.01,
        queue_max_per_thread: int = 64,
        unknown_task_duration: float = 0.5,
        validate: bool = False,
        story_length: int = 100_000,
        allowed_failures: int = 3,
    ):
        self.clock = clock
        #: a task is failed with `KilledWorker` once it was executing on more than this
        #: many workers that died
        self.allowed_failures = allowed_failures
        #: key -> how many workers died while executing it (only tasks that ever did)
        self.suspicious: dict[Key, int] = {}
        self.tasks: dict[Key, SchedTask] = {}
        self.workers: dict[str, SchedWorker] = {}
        self.clients: dict[str, SchedClient] = {}
        #: named holds (`HoldKeys`, and `fire-and-forget`): they want keys like clients
        #: but are no clients, so nothing is sent to them
        self.holds: dict[str, SchedClient] = {}
        #: heap of (priority, tie-breaker, task) ready to run; stale entries skipped
        self.queue: list[tuple[int, int, SchedTask]] = []
        self.unrunnable: set[SchedTask] = set()
        #: how many tasks are in state "queued" (the heap also holds stale entries)
        self.n_queued = 0
        #: steal requests in flight: task -> the worker asked to give it up
        self.stealing: dict[SchedTask, SchedWorker] = {}
        #: tasks whose worker refused to give them up (already running): not asked again
        self.steal_refused: set[SchedTask] = set()
        self.queue_seconds = queue_seconds
        self.queue_max_per_thread = queue_max_per_thread
        self.avg_duration = unknown_task_duration
        #: key prefix -> recent duration of its tasks (seconds): what stealing weighs a
        #: task's data against (at most MAX_PREFIXES of them)
        self.prefix_durations: dict[str, float] = {}
        self._seen_durations = False
        self.validate = validate
        self.story_log: deque[tuple] = deque(maxlen=story_length)
        self.transition_counter = 0
        #: read-only observers of transitions and new graphs (`observers.py`); the I/O
        #: shell adds and removes them, they never change the state
        self.observers: list[Any] = []
        self._tiebreak = 0
        #: str / int parts of task keys -> the one object all keys share (`records.shared_parts`)
        self._key_parts: dict[Any, Any] = {}
        #: run ids handed out with `compute-task` (one counter: unique per run of any task)
        self._run_id = 0
        self._out: list[Instruction] = []
        #: keys each worker must forget, sent at the end of the stimulus
        self._free_on: dict[SchedWorker, dict[Key, None]] = {}

    # ------------------------------------------------------------------ the one door
    # (`handle_stimulus`, with its recursion guard, is `shoal.stimulus.StateMachine`'s)

    def _handle(self, events: tuple) -> list[Instruction]:
        for ev in events:
            recs: Recs = {}
            handler = self._EVENT_HANDLERS[type(ev)]
            handler(self, ev, recs)
            self._transitions(recs, ev.stimulus_id)
        return self._finish(events[-1].stimulus_id if events else "")

    def instructions_after_failure(self, stimulus_id: str) -> list[Instruction]:
        """After `handle_stimulus` raised (a bug) and `validate_state` still passes: the
        end-of-stimulus steps (placing queued tasks, stealing, freeing keys) and every
        message queued so far. The events before the failing one and whatever part of
        it was applied stand; their messages must go out, or workers and clients would
        not know of work the state says they have (a task "processing" on a worker that
        was never told to run it waits for ever). There is no undo: see docs/design.md."""
        return self._finish(stimulus_id)

    def _finish(self, sid: str) -> list[Instruction]:
        self._schedule_queued(sid)
        if not self.n_queued and self.workers:
            self._steal(sid)
        for ws, keys in self._free_on.items():
            if ws.address in self.workers:
                if keys:
                    self._out.append(ToWorker(ws.address, m.FreeKeys(tuple(keys))))
        self._free_on.clear()
        out, self._out = self._out, []
        if self.validate:
            self.validate_state()
        return out

    # ------------------------------------------------------------------ shared mechanics

    def _maybe_release(self, ts: SchedTask, recs: Recs) -> None:
        if not ts.who_wants and not ts.n_waiters:
            recs[ts.key] = "forgotten"

    def _lost(self, ts: SchedTask, recs: Recs, why: str) -> None:
        """`ts` was in memory and no worker holds it any more."""
        if ts.spec is None:  # placed by a client: there is no lineage to recompute it from
            self._cancel(ts, "lost-data", f"scattered data {ts.key!r} was lost: {why}", recs)
            return
        for c in ts.who_wants:
            if not c.hold:
                self._out.append(ToClient(c.id, m.LostData(ts.key)))
        if ts.who_wants or ts.n_waiters:
            recs[ts.key] = "waiting"
        else:
            recs[ts.key] = "forgotten"

    def _stop_processing(self, ts: SchedTask) -> None:
        ws = ts.processing_on
        assert ws is not None
        del ws.processing[ts]
        without_member(ws.long_running, ts)
        without_member(ws.started, ts)
        ts.processing_on = None
        if self.stealing:
            self.stealing.pop(ts, None)
        if self.steal_refused:
            self.steal_refused.discard(ts)

    def _put_in_memory(
        self,
        ts: SchedTask,
        start: str,
        holders: list[SchedWorker],
        nbytes: int,
        type_name: str | None,
        recs: Recs,
        inline: Pickled | None = None,
    ) -> None:
        """What `ts` entering memory (from `start`) or gaining holders implies; its
        state was already set by the transition."""
        # interned: a million results of one type share one name, not one decoded copy each
        ts.nbytes, ts.type_name = nbytes, intern(type_name) if type(type_name) is str else type_name
        for ws in holders:
            if ws not in ts.who_has:
                ts.who_has = with_member(ts.who_has, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)
        ts.n_waiting = 0
        if start != "memory":
            for dts in ts.dependents:
                if dts.state == "waiting":
                    dts.n_waiting -= 1
                    if not dts.n_waiting:
                        recs[dts.key] = "queued"
        if start in ACTIVE:
            self._leave_active(ts, recs)
        self._report_done(ts, self._in_memory_msg(ts, inline) if ts.who_wants else None, recs)

    def _report_done(self, ts: SchedTask, msg: m.Message | None, recs: Recs) -> None:
        """`ts` finished (in memory or erred): tell the clients that want it, let the
        fire-and-forget pseudo-client go, and forget it if nothing needs it any more."""
        if ts.who_wants:
            for c in list(ts.who_wants):
                if c.hold:
                    if c.id == FIRE_AND_FORGET:
                        without_member(ts.who_wants, c)
                        c.wants.discard(ts)
                else:
                    self._out.append(ToClient(c.id, msg))
        if not ts.who_wants and not ts.n_waiters:
            recs[ts.key] = "forgotten"

    def _enter_active(self, ts: SchedTask) -> None:
        """`ts` needs its dependencies' data from now on."""
        for dts in ts.dependencies:
            dts.n_waiters += 1

    def _leave_active(self, ts: SchedTask, recs: Recs) -> None:
        """`ts` no longer needs its dependencies' data."""
        for dts in ts.dependencies:
            dts.n_waiters -= 1
            if not dts.n_waiters and not dts.who_wants:
                recs[dts.key] = "forgotten"

    def _in_memory_msg(self, ts: SchedTask, inline: Pickled | None) -> m.KeyInMemory:
        return m.KeyInMemory(ts.key, ts.type_name, tuple(w.address for w in ts.who_has), inline)

    def _erred_msg(self, ts: SchedTask) -> m.TaskErred:
        assert ts.exception is not None
        return m.TaskErred(ts.key, ts.exception, ts.traceback, ts.exception_text)

    @staticmethod
    def _blame(ts: SchedTask, culprit: SchedTask) -> None:
        """`ts` fails because `culprit` (an erred dependency) did: it carries the same
        exception itself, so the error survives the culprit being released."""
        ts.exception_blame = culprit.exception_blame or culprit
        ts.exception, ts.traceback, ts.exception_text = culprit.exception, culprit.traceback, culprit.exception_text

    def _forgettable(self, ts: SchedTask) -> bool:
        return not ts.who_wants and not ts.dependents and not ts.n_waiters

    def _cancel(self, ts: SchedTask, reason: str, text: str | None, recs: Recs) -> set[SchedTask]:
        """Cancel `ts` and, recursively, everything that depends on it, for every client."""
        return self._cancel_all([ts], reason, text, recs)

    def _cancel_all(self, roots: Any, reason: str, text: str | None, recs: Recs) -> set[SchedTask]:
        """Cancel the tasks `roots` and everything that depends on them, for every client
        (one `cancelled-keys` per client) and every hold."""
        stack = list(roots)
        seen = set(stack)
        while stack:
            t = stack.pop()
            for dts in t.dependents:
                if dts not in seen:
                    seen.add(dts)
                    stack.append(dts)
        by_client: dict[SchedClient, list[Key]] = {}
        for t in seen:
            for c in t.who_wants:
                by_client.setdefault(c, []).append(t.key)
                c.wants.discard(t)
            t.who_wants = EMPTY
            recs[t.key] = "forgotten"
        for c, keys in by_client.items():
            if not c.hold:
                self._out.append(ToClient(c.id, m.CancelledKeys(tuple(keys), reason, text)))
        return seen


    # ------------------------------------------------------------------ placement

    def capacity(self, ws: SchedWorker) -> int:
        depth = placement.queue_depth(self.avg_duration, self.queue_seconds, self.queue_max_per_thread)
        return ws.nthreads * (1 + depth)

    def _schedule_queued(self, sid: str) -> None:
        queue = self.queue
        if not queue or not self.workers:
            if queue and not self.workers:
                self._drain_stale()
            return
        free = {ws: self.capacity(ws) - ws.occupied for ws in self.workers.values() if ws.accepts_work}
        free = {ws: n for ws, n in free.items() if n > 0}
        deferred: list[tuple[int, int, SchedTask]] = []
        while queue and free:
            item = heapq.heappop(queue)
            ts = item[2]
            if ts.state != "queued":
                continue
            ws = placement.decide_worker(ts, self.workers, free, self.avg_duration, self.prefix_durations)
            if ws is None:
                if placement.valid_workers(ts, self.workers) is None or placement.has_valid(ts, self.workers):
                    deferred.append(item)  # its workers are busy; others may take the rest
                else:
                    self._t_queued_no_worker(ts, sid)
                continue
            self._t_queued_processing(ts, sid, ws)
            n = free.get(ws)
            if n is None:
                continue  # a busy worker holding the task's data: beyond its slots
            if n > 1:
                free[ws] = n - 1
            else:
                del free[ws]
        for item in deferred:
            heapq.heappush(queue, item)

    def _drain_stale(self) -> None:
        self.queue = [item for item in self.queue if item[2].state == "queued"]
        heapq.heapify(self.queue)

    def _steal(self, sid: str) -> None:
        for ts in placement.plan_steals(
            self.workers, self.stealing, self.steal_refused, self.avg_duration, self.prefix_durations
        ):
            victim = ts.processing_on
            assert victim is not None
            self.stealing[ts] = victim
            self._out.append(ToWorker(victim.address, m.StealRequest(ts.key, victim.processing[ts])))

    # ------------------------------------------------------------------ introspection

    def story(self, *keys: Key) -> list[tuple]:
        wanted = set(keys)
        return [entry for entry in self.story_log if entry[0] in wanted or entry[3] in wanted]

    def drop_output(self) -> None:
        """Forget the messages and frees queued by a stimulus that failed (the shell
        refuses it): nothing half-decided is sent."""
        self._out.clear()
        self._free_on.clear()

    def validate_state(self) -> None:
        """Check every invariant (`validate.py`); raises `InvalidState`."""
        validate_state(self)

    #: event type -> its handler (each mixin declares the events it handles)
    _EVENT_HANDLERS: dict[type, Callable] = {**ClientEvents.EVENT_HANDLERS, **WorkerEvents.EVENT_HANDLERS}
