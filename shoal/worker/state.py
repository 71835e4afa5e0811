"""The worker's whole truth, as a pure state machine.

Rules: the only way in is `WorkerState.handle_stimulus(*events) -> list[Instruction]`; no
asyncio, sockets, threads or wall clock here; the I/O shell (`server`) turns instructions
into thread-pool executions, peer fetches and messages, and feeds their outcomes back in
as events. The events are in `events.py`, the instructions in `instructions.py`, the
invariants in `validate.py`, the fetching of dependencies from peers in `fetching.py`
(a mixin); this module holds the table, the records and the machine.

Theory of operation. The scheduler sends `compute-task`. A task whose dependencies are
all held locally is `ready` (a priority heap); otherwise it is `waiting` while the
missing keys are fetched from peers. Dependency keys to fetch are grouped by holder so one
request carries many keys. Ready tasks whose resources are free become `executing`:
handed to the thread pool. Up to `nthreads` run at once; for tiny tasks a few more are
handed to the pool ahead (`pool_ahead`, sized from the observed task durations to about a
millisecond of work per thread, none for tasks that use resources) so a thread finds its
next task without waiting for the event loop, and completions come back in batches. The
scheduler hears `task-started` for the tasks that hold a thread (not those queued ahead), before the threads get them. A finished task's value goes into `data` and a
`task-finished` goes to the scheduler; a failure goes back as `task-failed`. A peer that
cannot serve a key is dropped from that key's holders; when no holder is left the
dependent task is handed back to the scheduler with `missing-data`.

Every state change of a key is an edge of `TRANSITIONS` (any other is an
`InvalidTransition`), appended to `story_log` (key, start, finish, stimulus id, time from
the `clock` the shell passes in[, cause]: what made it happen when the stimulus alone
does not say, e.g. ``"stolen"``, the peer that lacked a key), read with
`story(*keys_or_stimuli)`, and passed to the read-only `observers` the shell registers
(worker plugins).

States of a task sent here (`tasks`): waiting (dependencies being fetched), ready,
executing, long-running (seceded from the pool: it still runs but no longer takes a
thread slot); it ends in memory (its result in `data`), error (`task-failed` sent),
rescheduled (`reschedule` sent) or released (freed, stolen, or handed back for missing
data). States of a dependency this worker gets from peers (`fetch`): fetch (waiting for a
request), flight (requested), then memory, or released when no task needs it or no
holder has it. A key held in `data` is in memory until freed (released). Finished tasks
leave `tasks`; their results live in `data` until the scheduler frees them.

Memory (`shoal.worker.memory`): `data` is the mapping the shell gives (a `SpillStore`
that can move values to disk, or a plain dict); this machine only puts, reads the keys
of and deletes values, recording each result's size in `nbytes` before storing it.
The shell samples memory (`MemorySample`: managed bytes in memory, on disk, and the
process's resident memory); the pure policy says how much to spill (`Spill`, done by
the shell's spill thread, answered with `SpillDone`) and whether to pause. A paused
worker starts no task and fetches no data, serves what it holds, and tells the
scheduler (`worker-status`), which sends it no new work until it resumes. A spill that
fails (a full or unwritable disk) pauses the worker too, until a later spill succeeds
or managed memory falls back under `target`: no stored result is lost.

Actors: a task sent with `actor` creates a stateful object. The object itself goes into
`actors` (the I/O shell calls its methods there, outside this machine); `data` holds a
proxy of it (given by the shell with the result), which is what dependents, peers and
clients get. Freeing the key drops both.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from shoal.exceptions import InvalidTransition, ReentrantStimulus
from shoal.protocol import messages as m
from shoal.stimulus import StateMachine
from shoal.utils import Key
from shoal.worker.events import (
    WorkerEvent,
    ComputeTaskEvent,
    FreeKeysEvent,
    SecedeEvent,
    StealRequestEvent,
    ExecuteSuccess,
    ExecuteFailure,
    RescheduleEvent,
    FetchDone,
    UpdateDataEvent,
    MemorySample,
    SpillDone,
)
from shoal.worker.fetching import Fetching
from shoal.worker.instructions import Execute, Fetch, SendToScheduler, Spill, WorkerInstruction
from shoal.worker.memory import MemoryLimits, pause_wanted, spill_amount
from shoal.worker.validate import InvalidState, validate_state


#: the events (`events.py`) and instructions (`instructions.py`) stay importable here
__all__ = [
    "ComputeTaskEvent", "Execute", "ExecuteFailure", "ExecuteSuccess", "Fetch", "FetchDone", "FetchState",
    "FreeKeysEvent", "InvalidState", "InvalidTransition", "MemorySample", "ReentrantStimulus", "RescheduleEvent",
    "SecedeEvent", "SendToScheduler", "Spill", "SpillDone", "StealRequestEvent", "TASK_STREAM_FIELDS", "TRANSITIONS",
    "UpdateDataEvent", "WorkerEvent", "WorkerInstruction", "WorkerState", "WorkerTask",
]


# ---------------------------------------------------------------------------- the table

#: every state change a key may make on a worker (see the module docstring); the
#: docs' table (docs/design.md) is checked against it by a test
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    [
        ("released", "waiting"), ("released", "ready"), ("released", "memory"), ("released", "fetch"),
        ("waiting", "ready"), ("waiting", "released"),
        ("ready", "executing"), ("ready", "released"),
        ("executing", "long-running"), ("executing", "memory"), ("executing", "error"),
        ("executing", "rescheduled"), ("executing", "released"),
        ("long-running", "memory"), ("long-running", "error"), ("long-running", "rescheduled"),
        ("long-running", "released"),
        ("fetch", "flight"), ("fetch", "memory"), ("fetch", "released"),
        ("flight", "memory"), ("flight", "fetch"), ("flight", "released"),
        ("memory", "released"),
    ]
)  # fmt: skip



# ---------------------------------------------------------------------------- records

#: what each task-stream record tuple holds, in order; `transfers` is None or a list of
#: ``(start, stop, source, bytes fetched in that transfer)``; `error` is None or ``(exception text, traceback frames)``
TASK_STREAM_FIELDS = (
    "key", "thread", "start", "stop", "status", "nbytes", "type", "transfers", "error", "stimulus_id", "metadata",
)  # fmt: skip


def _no_clock() -> float:
    return 0.0



class WorkerTask:
    __slots__ = (
        "key", "run_id", "func", "spec", "priority", "dependencies", "waiting_for",
        "resources", "send_inline", "state", "started", "actor", "transfers", "_metadata",
    )  # fmt: skip

    def __init__(self, msg: m.ComputeTask):
        self.key = msg.key
        self.run_id = msg.run_id
        self.func = msg.func
        self.spec = msg.spec
        self.priority = msg.priority
        self.dependencies: tuple = tuple(msg.who_has)
        self.waiting_for: set[Key] = set()
        self.resources = msg.resources
        self.send_inline = msg.send_inline
        self.actor = msg.actor
        self.state = "released"  # until `_compute_task` logs its first edge
        #: the scheduler was told this task took a thread (`task-started`)
        self.started = False
        #: task-stream "transfer" entries ``(start, stop, source)`` of fetched dependencies
        self.transfers: list | None = None
        self._metadata: dict | None = None  # made on first use: most tasks have none

    @property
    def metadata(self) -> dict:
        """Small msgpack-able values a task or a worker plugin attaches to this task
        while it runs (``get_worker().state.tasks[key].metadata["rows"] = n``); they end up
        in its task-stream record, as in distributed."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    def __repr__(self) -> str:
        return f"<WorkerTask {self.key!r} {self.state}>"


@dataclass(slots=True)
class FetchState:
    """A dependency key this worker must get from a peer."""

    holders: list[str]
    #: its size as the scheduler reported it (0: unknown), to bound a fetch's bytes
    nbytes: int = 0
    needed_by: set[Key] = field(default_factory=set)
    tried: list[str] = field(default_factory=list)
    in_flight_from: str | None = None


class WorkerState(Fetching, StateMachine):
    def __init__(
        self,
        *,
        address: str,
        nthreads: int,
        resources: dict | None = None,
        validate: bool = False,
        max_keys_per_fetch: int = 1000,
        max_bytes_per_fetch: int = 50_000_000,
        task_stream_length: int = 10_000,
        clock: Callable[[], float] | None = None,
        story_length: int = 100_000,
        data: MutableMapping | None = None,
        nbytes: dict | None = None,
        memory: MemoryLimits | None = None,
    ):
        self.address = address
        self.nthreads = nthreads
        self.total_resources = dict(resources or {})
        self.available_resources = dict(self.total_resources)
        self.tasks: dict[Key, WorkerTask] = {}
        #: results held here, by key (the shell's store, or a dict)
        self.data: MutableMapping[Key, Any] = {} if data is None else data
        #: actor key -> the actor object (its proxy is in `data`)
        self.actors: dict[Key, Any] = {}
        #: each held result's size, recorded before the value is stored
        self.nbytes: dict[Key, int] = {} if nbytes is None else nbytes
        self.memory = memory or MemoryLimits()
        #: the last `MemorySample`: (managed in memory, managed on disk, process)
        self.memory_figures = (0, 0, 0)
        #: no new task starts and no data is fetched (memory is above `pause`, or a
        #: spill failed while memory is above `target`)
        self.paused = False
        #: a `Spill` is being done by the shell
        self.spilling = False
        #: why the last spill failed (cleared by a spill that succeeds)
        self.spill_error: str | None = None
        #: after a failed spill, wait this long (by `clock`) before trying again
        self.spill_retry_seconds = 1.0
        self._spill_failed_at = 0.0
        self.ready: list[tuple[tuple, int, Key, int]] = []
        self.executing: dict[Key, int] = {}  # key -> run_id
        self.fetch: dict[Key, FetchState] = {}
        self.in_flight: dict[str, tuple] = {}  # peer -> keys being fetched from it
        self.validate = validate
        self.max_keys_per_fetch = max_keys_per_fetch
        #: a fetch from one peer asks for at most this many bytes (at least one key), so
        #: neither side holds more than that of one transfer in memory at once
        self.max_bytes_per_fetch = max_bytes_per_fetch
        self._tiebreak = 0
        self._out: list[WorkerInstruction] = []
        self._sid = ""
        self._now = 0.0
        self.executed_count = 0
        #: running average of task compute time, seconds (None until one finished)
        self.avg_duration: float | None = None
        self.pool_ahead_seconds = 0.001
        self.max_pool_ahead_per_thread = 16
        #: the task stream: one record per finished execution, newest last (see
        #: `TASK_STREAM_FIELDS`); bounded, so memory stays flat however many tasks run
        self.task_stream: deque[tuple] = deque(maxlen=max(task_stream_length, 0))
        #: records ever appended: the index one past the newest record
        self.task_stream_count = 0
        #: (key, start, finish, stimulus_id, time) per task state change, newest last;
        #: `clock` gives the times, read once per `handle_stimulus` (the shell passes
        #: wall time; none: 0.0)
        self.clock = clock or _no_clock
        self.story_log: deque[tuple] = deque(maxlen=story_length)
        #: read-only observers of the story, called `(key, start, finish, stimulus_id)`
        #: after each entry (worker plugins' `transition` hooks); they never change the
        #: state. None registered: one falsy check per entry
        self.observers: list[Callable[[Key, str, str, str], None]] = []

    # ------------------------------------------------------------------ the one door
    # (`handle_stimulus`, with its recursion guard, is `shoal.stimulus.StateMachine`'s)

    def _handle(self, events: tuple) -> list[WorkerInstruction]:
        self._now = self.clock()  # one time for the whole batch: the story's timestamps
        for ev in events:
            self._sid = ev.stimulus_id
            self._HANDLERS[type(ev)](self, ev)
        self._ensure_fetching()
        self._ensure_executing()
        self._report_started()
        out, self._out = self._out, []
        if self.validate:
            self.validate_state()
        return out

    # ------------------------------------------------------------------ handlers

    def _compute_task(self, ev: ComputeTaskEvent) -> None:
        msg = ev.msg
        key = msg.key
        old = self.tasks.get(key)
        if old is not None:
            if old.run_id == msg.run_id:
                return
            self._log(key, old.state, "released", "superseded")
            self._drop_task(old)
        if key in self.data:  # we already hold the result (e.g. fetched it as a dependency)
            self._log(key, "released", "memory", "already held")
            self._send(m.TaskFinished(key, msg.run_id, self.nbytes.get(key, 0), "", 0.0, 0.0, None))
            return
        ts = self.tasks[key] = WorkerTask(msg)
        for dep in ts.dependencies:
            if dep in self.data:
                continue
            ts.waiting_for.add(dep)
            fs = self.fetch.get(dep)
            if fs is None:
                fs = self.fetch[dep] = FetchState(list(msg.who_has[dep]), int(msg.nbytes.get(dep) or 0))
                self._log(dep, "released", "fetch")
            else:
                for addr in msg.who_has[dep]:
                    if addr not in fs.holders and addr not in fs.tried:
                        fs.holders.append(addr)
            fs.needed_by.add(key)
        if ts.waiting_for:
            ts.state = "waiting"
            self._log(key, "released", "waiting")
        else:
            self._make_ready(ts, "released")

    def _free_keys(self, ev: FreeKeysEvent) -> None:
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is not None:
                self._log(key, ts.state, "released")
                self._drop_task(ts)
            if key in self.data:
                self._log(key, "memory", "released")
                del self.data[key]
                self.nbytes.pop(key, None)
                if self.actors:
                    self.actors.pop(key, None)

    def _secede(self, ev: SecedeEvent) -> None:
        ts = self.tasks.get(ev.key)
        if ts is None or ts.run_id != ev.run_id or ts.state != "executing":
            return
        if self.executing.get(ev.key) == ev.run_id:
            del self.executing[ev.key]
        ts.state = "long-running"
        self._log(ev.key, "executing", "long-running")
        self._send(m.LongRunning(ev.key, ev.run_id))

    def _steal_request(self, ev: StealRequestEvent) -> None:
        ts = self.tasks.get(ev.key)
        released = ts is not None and ts.run_id == ev.run_id and ts.state in ("waiting", "ready")
        if released:
            assert ts is not None
            self._log(ev.key, ts.state, "released", "stolen")
            self._drop_task(ts)
        self._send(m.StealResponse(ev.key, ev.run_id, released))

    def _execute_success(self, ev: ExecuteSuccess) -> None:
        duration = max(ev.stop - ev.start, 0.0)
        avg = self.avg_duration
        self.avg_duration = duration if avg is None else 0.9 * avg + 0.1 * duration
        ts = self._finish_execution(ev.key, ev.run_id)
        if ts is None:
            return  # freed or superseded while it ran: the result is dropped
        self.nbytes[ev.key] = ev.nbytes
        self.data[ev.key] = ev.value
        if ts.actor:
            self.actors[ev.key] = ev.instance
        self.task_stream_count += 1
        self.task_stream.append(
            (ev.key, ev.thread, ev.start, ev.stop, "OK", ev.nbytes, ev.type_name, ts.transfers, None, ev.stimulus_id,
             ts._metadata or None)  # fmt: skip
        )
        self._log(ev.key, ts.state, "memory")
        self._send(
            m.TaskFinished(ev.key, ev.run_id, ev.nbytes, ev.type_name, ev.start, ev.stop, ev.inline)
        )

    def _execute_failure(self, ev: ExecuteFailure) -> None:
        ts = self._finish_execution(ev.key, ev.run_id)
        if ts is not None:
            self.task_stream_count += 1
            self.task_stream.append(
                (ev.key, ev.thread, ev.start, ev.stop, "error", 0, None, ts.transfers, (ev.text, ev.traceback),
                 ev.stimulus_id, ts._metadata or None)  # fmt: skip
            )
            self._log(ev.key, ts.state, "error")
            self._send(
                m.TaskFailed(ev.key, ev.run_id, ev.exception, ev.traceback, ev.text, ev.start, ev.stop)
            )

    def _reschedule(self, ev: RescheduleEvent) -> None:
        ts = self._finish_execution(ev.key, ev.run_id)
        if ts is not None:
            self._log(ev.key, ts.state, "rescheduled")
            self._send(m.RescheduleTask(ev.key, ev.run_id))

    def _memory_sample(self, ev: MemorySample) -> None:
        self.memory_figures = (ev.managed, ev.spilled, ev.process)
        limits = self.memory
        if self.spill_error is not None and ev.managed <= limits.bytes_at(limits.target):
            self.spill_error = None  # data was freed: nothing needs to go to disk now
        retry = self.spill_error is None or self._now - self._spill_failed_at >= self.spill_retry_seconds
        if not self.spilling and retry:
            n = spill_amount(limits, ev.managed, ev.process)
            if n > 0:
                self.spilling = True
                self._out.append(Spill(n))
        self._set_paused(pause_wanted(limits, ev.process) or self.spill_error is not None)

    def _spill_done(self, ev: SpillDone) -> None:
        self.spilling = False
        self.spill_error = ev.error
        if ev.error is not None:
            self._spill_failed_at = self._now
        managed, spilled, process = self.memory_figures
        self.memory_figures = (max(managed - ev.freed, 0), spilled + ev.freed, process)
        if ev.error is not None:
            self._set_paused(True)
        elif not pause_wanted(self.memory, process):
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            self._send(m.WorkerStatus("paused" if paused else "running"))

    # ------------------------------------------------------------------ mechanics

    def _send(self, msg: m.Message) -> None:
        self._out.append(SendToScheduler(msg))

    def _log(self, key: Key, start: str, finish: str, detail: Any = None) -> None:
        """Record `key` moving `start` -> `finish` (an edge of `TRANSITIONS`) and tell
        the observers; `detail` is the cause when the stimulus alone does not say."""
        if (start, finish) not in TRANSITIONS:
            raise InvalidTransition(key, start, finish, self.story(key))
        if detail is None:
            self.story_log.append((key, start, finish, self._sid, self._now))
        else:
            self.story_log.append((key, start, finish, self._sid, self._now, detail))
        if self.observers:
            for obs in self.observers:
                obs(key, start, finish, self._sid)

    def story(self, *keys_or_stimuli: Any) -> list[tuple]:
        """Log entries `(key, start, finish, stimulus_id, time[, detail])` of these keys or
        stimulus ids, oldest first."""
        wanted = set(keys_or_stimuli)
        return [e for e in self.story_log if e[0] in wanted or e[3] in wanted]

    def _make_ready(self, ts: WorkerTask, start: str | None = None) -> None:
        """`ts` (new, from "released", or "waiting") has every dependency here."""
        self._log(ts.key, start or ts.state, "ready")
        ts.state = "ready"
        self._tiebreak += 1
        heapq.heappush(self.ready, (ts.priority, self._tiebreak, ts.key, ts.run_id))

    def _finish_execution(self, key: Key, run_id: int) -> WorkerTask | None:
        """Bookkeeping when an execution ends; returns the task if its outcome counts."""
        if self.executing.get(key) == run_id:
            del self.executing[key]
        ts = self.tasks.get(key)
        if ts is None or ts.run_id != run_id or ts.state not in ("executing", "long-running"):
            return None
        self._release_resources(ts)
        del self.tasks[key]
        self.executed_count += 1
        return ts

    def _drop_task(self, ts: WorkerTask) -> None:
        """Forget a task in any state (its heap entry goes stale; a running thread's
        result will be ignored when it arrives)."""
        del self.tasks[ts.key]
        if ts.state in ("executing", "long-running"):
            self._release_resources(ts)
        for dep in ts.waiting_for:
            fs = self.fetch.get(dep)
            if fs is not None:
                fs.needed_by.discard(ts.key)
                if not fs.needed_by and fs.in_flight_from is None:
                    del self.fetch[dep]
                    self._log(dep, "fetch", "released", "not needed")
        ts.state = "released"

    def _release_resources(self, ts: WorkerTask) -> None:
        if ts.resources:
            for k, v in ts.resources.items():
                self.available_resources[k] = self.available_resources.get(k, 0) + v

    def pool_ahead(self) -> int:
        """How many tasks beyond `nthreads` may wait in the thread pool's queue."""
        avg = self.avg_duration
        if avg is None or avg <= 0:
            return 0
        per_thread = min(self.max_pool_ahead_per_thread, int(self.pool_ahead_seconds / avg))
        return self.nthreads * per_thread

    def _ensure_executing(self) -> None:
        ready = self.ready
        if not ready or self.paused:
            return
        blocked: list = []
        limit = self.nthreads + self.pool_ahead()
        while ready and len(self.executing) < limit:
            item = heapq.heappop(ready)
            ts = self.tasks.get(item[2])
            if ts is None or ts.run_id != item[3] or ts.state != "ready":
                continue
            if ts.resources:
                if len(self.executing) >= self.nthreads:
                    blocked.append(item)  # never queue a resource-holding task behind others
                    continue
                avail = self.available_resources
                if any(avail.get(k, 0) < v for k, v in ts.resources.items()):
                    blocked.append(item)
                    continue
                for k, v in ts.resources.items():
                    avail[k] -= v
            ts.state = "executing"
            self._log(ts.key, "ready", "executing")
            self.executing[ts.key] = ts.run_id
            self._out.append(Execute(ts.key, ts.run_id, ts.func, ts.spec, ts.dependencies, ts.send_inline, ts.actor))
        for item in blocked:
            heapq.heappush(ready, item)

    def _report_started(self) -> None:
        """Tell the scheduler which tasks hold a thread. The pool serves `executing` in
        the order it was handed over, so its first `nthreads` entries are running (or
        about to) and the rest are queued ahead in the pool: if this worker dies, only
        the former are suspected of having killed it."""
        keys: list[Key] = []
        run_ids: list[int] = []
        tasks = self.tasks
        n = self.nthreads
        for key, run_id in self.executing.items():
            if n <= 0:
                break
            n -= 1
            ts = tasks.get(key)
            if ts is not None and not ts.started and ts.run_id == run_id:
                ts.started = True
                keys.append(key)
                run_ids.append(run_id)
        if keys:
            self._send(m.TaskStarted(tuple(keys), tuple(run_ids)))

    # ------------------------------------------------------------------ introspection

    def validate_state(self) -> None:
        """Check every invariant (`validate.py`); raise `InvalidState` naming the first that fails."""
        validate_state(self)

    _HANDLERS: dict[type, Callable] = {
        **Fetching.EVENT_HANDLERS,
        ComputeTaskEvent: _compute_task,
        FreeKeysEvent: _free_keys,
        StealRequestEvent: _steal_request,
        SecedeEvent: _secede,
        ExecuteSuccess: _execute_success,
        ExecuteFailure: _execute_failure,
        RescheduleEvent: _reschedule,
        MemorySample: _memory_sample,
        SpillDone: _spill_done,
    }
