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
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from sys import intern
from typing import Any

from shoal.exceptions import InvalidTransition, KilledWorker, ReentrantStimulus
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps
from shoal.scheduler import placement
from shoal.scheduler.events import (
    AddClient,
    AddWorker,
    ClientMsg,
    DropReplicas,
    HoldKeys,
    ReleaseHold,
    RemoveClient,
    Recompute,
    RemoveWorker,
    Restart,
    SchedulerEvent,
    SetRestrictions,
    SetRetiring,
    WantKeys,
    WorkerMsg,
)
from shoal.scheduler.instructions import Instruction, ToClient, ToWorker
from shoal.protocol.priority import priority_rank
from shoal.utils import Key, key_prefix

FIRE_AND_FORGET = "fire-and-forget"

#: how many key prefixes' task durations are remembered (graphs whose keys have no
#: shared prefix would otherwise add one entry per task)
MAX_PREFIXES = 10_000

#: Shared stand-in for an empty set: most tasks' relation sets are empty most of the
#: time, and an empty `set()` costs 216 bytes. `_with` makes a real set on first insert.
_EMPTY: frozenset = frozenset()


#: how many distinct key parts (layer names, chunk indices) are shared before the table
#: starts over
MAX_KEY_PARTS = 100_000


def _shared_parts(key: tuple, parts: dict) -> tuple:
    """`key` rebuilt from one shared object per distinct str / int part. Every key of a
    graph is decoded on its own, so a million `("getitem-<token>", i, j)` keys would
    otherwise hold a million copies of the layer name and of each index above 256."""
    out = []
    for part in key:
        kind = type(part)
        if kind is str or kind is int:  # exact types: never merge True with 1
            shared = parts.get(part)
            if shared is None:
                if len(parts) >= MAX_KEY_PARTS:
                    parts.clear()
                parts[part] = shared = part
            out.append(shared)
        elif kind is tuple:
            out.append(_shared_parts(part, parts))
        else:
            out.append(part)
    return tuple(out)


def _with(s: Any, item: Any) -> set:
    """`s` plus `item`, as a mutable set (store the result back)."""
    if s is _EMPTY:
        return {item}
    s.add(item)
    return s


#: `dependents` stays a tuple up to this many entries (a 1-item tuple costs 48 bytes, a
#: list 72, a set 216; most tasks have one or two dependents), then becomes a set
_SMALL = 8


def _with_dependent(s: Any, item: Any) -> tuple | set:
    """`s` plus `item` (store the result back): a short tuple, or a set once long."""
    if s is _EMPTY:
        return (item,)
    if type(s) is tuple:
        if item in s:
            return s
        if len(s) < _SMALL:
            return (*s, item)
        s = set(s)
    s.add(item)
    return s


def _without_dependent(s: Any, item: Any) -> Any:
    """`s` without `item` (store the result back)."""
    if type(s) is tuple:
        if item in s:
            rest = tuple(x for x in s if x is not item)
            return rest if rest else _EMPTY
        return s
    if s:
        s.discard(item)
    return s


def _without(s: Any, item: Any) -> None:
    if s:
        s.discard(item)




class InvalidState(AssertionError):
    """`validate_state` found a broken invariant."""


class _TaskExtra:
    """The fields of a task that most tasks never set (errors, annotations), kept apart
    so a million plain tasks do not carry nine empty slots each."""

    __slots__ = (
        "exception", "traceback", "exception_text", "exception_blame", "retries", "restrictions",
        "loose", "resources", "actor",
    )  # fmt: skip

    def __init__(self) -> None:
        for name, default in _EXTRA_DEFAULTS.items():
            setattr(self, name, default)


_EXTRA_DEFAULTS: dict[str, Any] = {
    "exception": None,  # Pickled
    "traceback": None,  # list of frames
    "exception_text": "",
    "exception_blame": None,  # the task whose failure this task inherits
    "retries": 0,
    "restrictions": None,  # frozenset of worker addresses, hosts or names
    "loose": False,
    "resources": None,  # dict
    "actor": False,  # the result is a stateful actor living on the worker that made it
}


def _extra_field(name: str) -> property:
    default = _EXTRA_DEFAULTS[name]

    def get(self: SchedTask) -> Any:
        x = self._extra
        return default if x is None else getattr(x, name)

    def put(self: SchedTask, value: Any) -> None:
        x = self._extra
        if x is None:
            if value is default or (type(value) is type(default) and value == default):
                return
            x = self._extra = _TaskExtra()
        setattr(x, name, value)

    return property(get, put)


class SchedTask:
    """The scheduler's record of one task. Mutated only by `SchedulerState`.

    Kept small for million-task graphs: rarely set fields (errors, annotations) live in
    an optional `_TaskExtra`, read and written through properties of the same names."""

    __slots__ = (
        "key", "state", "prefix", "func", "spec", "priority", "dependencies", "dependents",
        "n_waiting", "n_waiters", "who_has", "processing_on", "who_wants", "nbytes",
        "type_name", "_extra",
    )  # fmt: skip

    exception = _extra_field("exception")
    traceback = _extra_field("traceback")
    exception_text = _extra_field("exception_text")
    exception_blame = _extra_field("exception_blame")
    retries = _extra_field("retries")
    restrictions = _extra_field("restrictions")
    loose = _extra_field("loose")
    resources = _extra_field("resources")
    actor = _extra_field("actor")

    def __init__(self, key: Key):
        self.key = key
        self.state = "released"
        self.prefix = key_prefix(key)
        self.func: Pickled | None = None
        #: the opaque run spec (its pickle bytes when it has no out-of-band buffers: see
        #: `run_spec`); None for data placed by a client (scatter)
        self.spec: Pickled | bytes | None = None
        #: `placement.priority_rank` of the client's priority tuple: lower runs first
        self.priority = 0
        self.dependencies: tuple[SchedTask, ...] = ()
        # the sets below start as the shared _EMPTY and become real sets on first insert
        self.dependents: tuple[SchedTask, ...] | set[SchedTask] = _EMPTY  # type: ignore[assignment]
        #: while waiting: how many dependencies are not in memory yet
        self.n_waiting = 0
        #: how many dependents are active (waiting, queued, no-worker, processing) and so
        #: still need this task's result
        self.n_waiters = 0
        self.who_has: set[SchedWorker] = _EMPTY  # type: ignore[assignment]
        self.processing_on: SchedWorker | None = None
        self.who_wants: set[SchedClient] = _EMPTY  # type: ignore[assignment]
        self.nbytes = -1
        self.type_name: str | None = None
        self._extra: _TaskExtra | None = None

    @property
    def run_id(self) -> int | None:
        """The id of the current run while processing (kept in the worker's
        `processing` map, not in every task record), else None."""
        ws = self.processing_on
        return None if ws is None else ws.processing.get(self)

    @property
    def run_spec(self) -> Pickled | None:
        """The run spec as it travels to a worker."""
        spec = self.spec
        return Pickled(spec) if type(spec) is bytes else spec

    def __repr__(self) -> str:
        return f"<SchedTask {self.key!r} {self.state}>"


class SchedWorker:
    __slots__ = (
        "address", "name", "host", "nthreads", "memory_limit", "resources", "pid",
        "local_directory", "versions", "nanny", "processing", "long_running", "started", "has_what",
        "nbytes", "added", "actors", "retiring", "paused",
    )  # fmt: skip

    def __init__(self, msg: m.RegisterWorker, now: float):
        self.address = msg.address
        self.name = msg.name
        self.host = msg.address.split("://")[-1].rsplit(":", 1)[0]
        self.nthreads = msg.nthreads
        self.memory_limit = msg.memory_limit
        self.resources = dict(msg.resources or {})
        self.pid = msg.pid
        self.local_directory = msg.local_directory
        self.versions = msg.versions
        self.nanny = msg.nanny
        #: tasks sent to this worker and not finished, in dispatch order
        #: (-> the run id it was sent with: a stale report names an older run)
        self.processing: dict[SchedTask, int] = {}
        #: processing tasks that seceded from the worker's pool: they take no slot
        self.long_running: set[SchedTask] = _EMPTY  # type: ignore[assignment]
        #: processing tasks the worker reported as started in a thread (`task-started`):
        #: if the worker dies, these are suspected of killing it; queued ones are not
        self.started: set[SchedTask] = _EMPTY  # type: ignore[assignment]
        self.has_what: set[SchedTask] = set()
        self.nbytes = 0
        self.added = now
        #: actor tasks whose object lives here (other holders only have proxies)
        self.actors: set[SchedTask] = _EMPTY  # type: ignore[assignment]
        #: being retired (`SetRetiring`): gets no new tasks while its data moves away
        self.retiring = False
        #: the worker paused itself for memory (`worker-status`): no new tasks until it
        #: resumes; the tasks it has not started may be stolen
        self.paused = False

    @property
    def accepts_work(self) -> bool:
        """May be given new tasks: neither retiring nor paused."""
        return not (self.retiring or self.paused)

    @property
    def occupied(self) -> int:
        """Tasks taking a slot here: processing ones that have not seceded."""
        return len(self.processing) - len(self.long_running)

    def __repr__(self) -> str:
        return f"<SchedWorker {self.address} processing={len(self.processing)}>"


class SchedClient:
    """A client that wants keys, or (`hold=True`) a named hold (`HoldKeys`: an
    extension's, or `fire-and-forget`) that keeps keys alive and is never sent anything."""

    __slots__ = ("id", "wants", "hold")

    def __init__(self, client_id: str, hold: bool = False):
        self.id = client_id
        self.wants: set[SchedTask] = set()
        self.hold = hold

    def __repr__(self) -> str:
        return f"<SchedClient {self.id}{' (hold)' if self.hold else ''} wants={len(self.wants)}>"


Recs = dict  # key -> recommended finish state


class SchedulerState:
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
        #: str / int parts of task keys -> the one object all keys share (`_shared_parts`)
        self._key_parts: dict[Any, Any] = {}
        #: run ids handed out with `compute-task` (one counter: unique per run of any task)
        self._run_id = 0
        self._out: list[Instruction] = []
        #: True while `handle_stimulus` runs (the recursion guard)
        self._handling = False
        #: keys each worker must forget, sent at the end of the stimulus
        self._free_on: dict[SchedWorker, dict[Key, None]] = {}

    # ------------------------------------------------------------------ the one door

    def handle_stimulus(self, *events: SchedulerEvent) -> list[Instruction]:
        if self._handling:
            raise ReentrantStimulus(f"handle_stimulus({events!r}) called while handling a stimulus")
        self._handling = True
        try:
            return self._handle(events)
        finally:
            self._handling = False

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

    # ------------------------------------------------------------------ event handlers

    def _handle_add_client(self, ev: AddClient, recs: Recs) -> None:
        self.clients.setdefault(ev.client_id, SchedClient(ev.client_id))

    def _handle_remove_client(self, ev: RemoveClient, recs: Recs) -> None:
        cs = self.clients.pop(ev.client_id, None)
        if cs is None:
            return
        for ts in cs.wants:
            _without(ts.who_wants, cs)
            self._maybe_release(ts, recs)
        cs.wants.clear()

    def _handle_client_msg(self, ev: ClientMsg, recs: Recs) -> None:
        cs = self.clients.get(ev.client_id)
        if cs is None:
            cs = self.clients[ev.client_id] = SchedClient(ev.client_id)
        self._CLIENT_HANDLERS[type(ev.msg)](self, cs, ev.msg, recs, ev.stimulus_id)

    def _handle_add_worker(self, ev: AddWorker, recs: Recs) -> None:
        msg = ev.msg
        if msg.address in self.workers:
            return
        self.workers[msg.address] = SchedWorker(msg, self.clock())
        for ts in self.unrunnable:
            recs[ts.key] = "queued"

    def _handle_remove_worker(self, ev: RemoveWorker, recs: Recs) -> None:
        ws = self.workers.pop(ev.address, None)
        if ws is None:
            return
        self._free_on.pop(ws, None)
        for ts in ws.has_what:
            _without(ts.who_has, ws)
            if ts.who_has and ts.who_wants and ts.state == "memory":
                # clients fetching it from the lost worker learn where it still is
                moved = m.KeyMoved(ts.key, tuple(w.address for w in ts.who_has))
                self._out.extend(ToClient(c.id, moved) for c in ts.who_wants if not c.hold)
            if ts in ws.actors:
                # the object and its state are gone; proxies elsewhere point at nothing
                text = f"the worker {ws.address} holding actor {ts.key!r} was lost ({ev.reason})"
                self._cancel(ts, "lost-actor", text, recs)
            elif not ts.who_has and ts.state == "memory":
                self._lost(ts, recs, f"worker {ws.address} was lost ({ev.reason})")
        ws.has_what.clear()
        ws.actors = _EMPTY
        for ts in list(ws.processing):
            if ts in ws.started:
                n = self.suspicious[ts.key] = self.suspicious.get(ts.key, 0) + 1
                if n > self.allowed_failures:
                    exc = KilledWorker(ts.key, ws.address, self.allowed_failures, ev.reason)
                    ts.exception, ts.traceback, ts.exception_text = dumps(exc), None, str(exc)
                    self._transition(ts, "erred", ev.stimulus_id, recs)
                    continue
            self._transition(ts, "waiting", ev.stimulus_id, recs)

    def _hold(self, holder: str) -> SchedClient:
        hs = self.holds.get(holder)
        if hs is None:
            if holder in self.clients:
                raise ValueError(f"hold name {holder!r} is a client's id")
            hs = self.holds[holder] = SchedClient(holder, hold=True)
        return hs

    def _handle_hold_keys(self, ev: HoldKeys, recs: Recs) -> None:
        hs = self._hold(ev.holder)
        tasks = self.tasks
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is not None:
                self._want(hs, ts, recs)

    def _handle_release_hold(self, ev: ReleaseHold, recs: Recs) -> None:
        hs = self.holds.get(ev.holder)
        if hs is None:
            return
        if ev.keys is None:
            del self.holds[ev.holder]
            held = list(hs.wants)
        else:
            held = [ts for ts in map(self.tasks.get, ev.keys) if ts is not None and ts in hs.wants]
        for ts in held:
            _without(ts.who_wants, hs)
            hs.wants.discard(ts)
            self._maybe_release(ts, recs)

    def _handle_want_keys(self, ev: WantKeys, recs: Recs) -> None:
        cs = self.clients.get(ev.client_id)
        if cs is not None:  # else gone meanwhile: nobody to keep them for
            self._client_wants(cs, ev.keys, recs)

    def _handle_restart(self, ev: Restart, recs: Recs) -> None:
        roots: dict[SchedTask, None] = {}
        for owners in (self.clients, self.holds):
            for cs in owners.values():
                roots.update(dict.fromkeys(cs.wants))
        if roots:
            self._cancel_all(roots, m.RESTART_REASON, m.RESTART_MSG, recs)

    def _handle_worker_msg(self, ev: WorkerMsg, recs: Recs) -> None:
        ws = self.workers.get(ev.address)
        if ws is None:
            return  # a message from a worker we already removed: stale
        self._WORKER_HANDLERS[type(ev.msg)](self, ws, ev.msg, recs, ev.stimulus_id)

    # client messages

    def _update_graph(self, cs: SchedClient, msg: m.UpdateGraph, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        funcs = msg.funcs
        new: list[tuple[SchedTask, tuple]] = []
        for key, func_index, spec, deps, priority, ann in msg.tasks:
            ts = tasks.get(key)
            if ts is not None and (ts.spec is not None or ts.state != "released"):
                continue  # known key: the existing task wins (distributed semantics)
            if ts is None:
                if type(key) is tuple:
                    key = _shared_parts(key, self._key_parts)
                ts = tasks[key] = SchedTask(key)
            ts.func = funcs[func_index] if func_index >= 0 else None
            # no out-of-band buffers: keep just the bytes (a Pickled wrapper is 48 B a task)
            ts.spec = spec.header if type(spec) is Pickled and not spec.buffers and type(spec.header) is bytes else spec
            ts.priority = priority_rank(priority)
            if ann:
                self._annotate(ts, ann)
            new.append((ts, deps))
        lost: list[SchedTask] = []
        missing: dict[Key, Key] = {}  # lost task's key -> the dependency nobody has
        for ts, deps in new:
            linked = []
            for dk in deps:
                dts = tasks.get(dk)
                if dts is None:
                    lost.append(ts)
                    missing[ts.key] = dk
                    break
                if dts not in linked:
                    linked.append(dts)
                    dts.dependents = _with_dependent(dts.dependents, ts)
            ts.dependencies = tuple(linked)
        cancelled: set[SchedTask] = set()
        for ts in lost:
            cancelled |= self._cancel(ts, "lost dependencies", _missing_text(ts.key, missing[ts.key]), recs)
        if self.observers:
            for obs in self.observers:
                obs.new_keys(cs.id, msg.wanted)
        for key in msg.wanted:
            ts = tasks.get(key)
            if ts is None or ts in cancelled:
                k = key if key in missing else next(iter(missing), None)
                text = _missing_text(k, missing[k]) if k is not None else None
                self._out.append(ToClient(cs.id, m.CancelledKeys((key,), "lost dependencies", text)))
                continue
            self._want(cs, ts, recs)

    def _annotate(self, ts: SchedTask, ann: dict) -> None:
        workers = ann.get("workers")
        if workers:
            ts.restrictions = frozenset(workers)
            ts.loose = bool(ann.get("allow_other_workers"))
        if ann.get("resources"):
            ts.resources = dict(ann["resources"])
        if ann.get("retries"):
            ts.retries = int(ann["retries"])
        if ann.get("actor"):
            ts.actor = True

    def _want(self, cs: SchedClient, ts: SchedTask, recs: Recs) -> None:
        ts.who_wants = _with(ts.who_wants, cs)
        cs.wants.add(ts)
        if cs.hold:
            if ts.state == "released":
                recs[ts.key] = "waiting"
        elif ts.state == "memory":
            self._out.append(ToClient(cs.id, self._in_memory_msg(ts, None)))
        elif ts.state == "erred":
            self._out.append(ToClient(cs.id, self._erred_msg(ts)))
        elif ts.state == "released":
            recs[ts.key] = "waiting"

    def _release_keys(self, cs: SchedClient, msg: m.ReleaseKeys, recs: Recs, sid: str) -> None:
        for key in msg.keys:
            ts = self.tasks.get(key)
            if ts is None or cs not in ts.who_wants:
                continue
            _without(ts.who_wants, cs)
            cs.wants.discard(ts)
            self._maybe_release(ts, recs)

    def _desire_keys(self, cs: SchedClient, msg: m.DesireKeys, recs: Recs, sid: str) -> None:
        if msg.client_id == FIRE_AND_FORGET:
            target = self._hold(FIRE_AND_FORGET)
        else:
            target = self.clients.get(msg.client_id)
            if target is None:
                target = self.clients[msg.client_id] = SchedClient(msg.client_id)
        self._client_wants(target, msg.keys, recs)

    def _client_wants(self, target: SchedClient, keys: Any, recs: Recs) -> None:
        unknown = []
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                unknown.append(key)
                continue
            if target.id == FIRE_AND_FORGET and ts.state in ("memory", "erred"):
                continue  # already done: nothing to keep alive
            self._want(target, ts, recs)
        if unknown and not target.hold:
            # a future for a key nobody holds (released, forgotten by a restart): it
            # would otherwise wait forever
            text = "the scheduler does not know this key (it was released or forgotten, e.g. by a restart)"
            self._out.append(ToClient(target.id, m.CancelledKeys(tuple(unknown), "unknown-key", text)))

    def _cancel_keys(self, cs: SchedClient, msg: m.CancelKeys, recs: Recs, sid: str) -> None:
        reason = msg.reason or "unknown"
        for key in msg.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            if msg.force or ts.who_wants <= {cs}:
                self._cancel(ts, reason, msg.msg, recs)
            elif cs in ts.who_wants:
                _without(ts.who_wants, cs)
                cs.wants.discard(ts)

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
            t.who_wants = _EMPTY
            recs[t.key] = "forgotten"
        for c, keys in by_client.items():
            if not c.hold:
                self._out.append(ToClient(c.id, m.CancelledKeys(tuple(keys), reason, text)))
        return seen

    def _retry_keys(self, cs: SchedClient, msg: m.RetryKeys, recs: Recs, sid: str) -> None:
        roots: set[SchedTask] = set()
        stack = [self.tasks[k] for k in msg.keys if k in self.tasks]
        while stack:
            ts = stack.pop()
            if ts.state != "erred" or ts in roots:
                continue
            roots.add(ts)
            stack.extend(ts.dependencies)
        for ts in roots:
            self._transition(ts, "released", sid, recs)
        for ts in roots:
            for c in ts.who_wants:
                if not c.hold:
                    self._out.append(ToClient(c.id, m.TaskRetried(ts.key)))
            if ts.who_wants:
                recs[ts.key] = "waiting"  # erred dependencies follow as they are needed

    def _update_data(self, cs: SchedClient, msg: m.UpdateData, recs: Recs, sid: str) -> None:
        for key, addrs in msg.who_has.items():
            holders = [self.workers[a] for a in addrs if a in self.workers]
            if not holders:
                self._out.append(
                    ToClient(cs.id, m.CancelledKeys((key,), "scatter failed", "no worker holds it"))
                )
                continue
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = SchedTask(key)
            elif ts.state not in ("memory", "released"):
                self._transition(ts, "released", sid, recs)
            ts.who_wants = _with(ts.who_wants, cs)
            cs.wants.add(ts)
            nbytes, type_name = msg.nbytes.get(key, 0), msg.types.get(key)
            if ts.state == "memory":  # scattered again: more holders, no transition
                self._put_in_memory(ts, "memory", holders, nbytes, type_name, recs)
            else:
                self._t_released_memory(ts, sid, recs, holders, nbytes, type_name)

    def _t_released_memory(
        self, ts: SchedTask, sid: str, recs: Recs, holders: list[SchedWorker], nbytes: int, type_name: str | None
    ) -> None:
        """Data a client placed on `holders` (scatter): logged, so progress bars, plugins
        and stories see scattered keys like computed ones."""
        ts.state = "memory"
        self._put_in_memory(ts, "released", holders, nbytes, type_name, recs)
        self._log(ts, "released", sid)

    # worker messages

    def _task_finished(self, ws: SchedWorker, msg: m.TaskFinished, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ws.processing.get(ts) != msg.run_id:
            if ts is None or ws not in ts.who_has:
                self._free_on.setdefault(ws, {})[msg.key] = None
            return
        duration = msg.stop - msg.start
        if self._seen_durations:
            self.avg_duration = 0.9 * self.avg_duration + 0.1 * duration
        else:
            self.avg_duration, self._seen_durations = duration, True
        durations = self.prefix_durations
        known = durations.get(ts.prefix)
        if known is not None:
            durations[ts.prefix] = 0.5 * known + 0.5 * duration
        elif len(durations) < MAX_PREFIXES:
            durations[ts.prefix] = duration
        self._t_processing_memory(ts, sid, recs, ws, msg)

    def _t_processing_memory(self, ts: SchedTask, sid: str, recs: Recs, ws: SchedWorker, msg: m.TaskFinished) -> None:
        """`ts` finished on `ws` (`task-finished`)."""
        self._stop_processing(ts)
        ts.exception_blame = None
        if ts.actor:
            ws.actors = _with(ws.actors, ts)
        ts.state = "memory"
        self._put_in_memory(ts, "processing", [ws], msg.nbytes, msg.type_name, recs, msg.inline)
        self._log(ts, "processing", sid)

    def _task_failed(self, ws: SchedWorker, msg: m.TaskFailed, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ws.processing.get(ts) != msg.run_id:
            return
        if ts.retries > 0:
            ts.retries -= 1
            self._transition(ts, "waiting", sid, recs)
            return
        ts.exception, ts.traceback, ts.exception_text = msg.exception, msg.traceback, msg.text
        self._transition(ts, "erred", sid, recs)

    def _missing_data(self, ws: SchedWorker, msg: m.MissingData, recs: Recs, sid: str) -> None:
        dts = self.tasks.get(msg.dep)
        if dts is not None:
            for addr in msg.holders:
                holder = self.workers.get(addr)
                if holder is not None and holder in dts.who_has:
                    _without(dts.who_has, holder)
                    holder.has_what.discard(dts)
            if dts.state == "memory" and not dts.who_has:
                self._lost(dts, recs, "no worker holds it any more")
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)

    def _reschedule(self, ws: SchedWorker, msg: m.RescheduleTask, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)

    def _task_started(self, ws: SchedWorker, msg: m.TaskStarted, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        for key, run_id in zip(msg.keys, msg.run_ids):
            ts = tasks.get(key)
            if ts is not None and ws.processing.get(ts) == run_id:
                ws.started = _with(ws.started, ts)

    def _long_running(self, ws: SchedWorker, msg: m.LongRunning, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            ws.long_running = _with(ws.long_running, ts)

    def _steal_response(self, ws: SchedWorker, msg: m.StealResponse, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or self.stealing.get(ts) is not ws:
            return
        del self.stealing[ts]
        if msg.released and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)  # -> queued -> the idle worker
        elif not msg.released:
            self.steal_refused.add(ts)

    def _steal(self, sid: str) -> None:
        for ts in placement.plan_steals(
            self.workers, self.stealing, self.steal_refused, self.avg_duration, self.prefix_durations
        ):
            victim = ts.processing_on
            assert victim is not None
            self.stealing[ts] = victim
            self._out.append(ToWorker(victim.address, m.StealRequest(ts.key, victim.processing[ts])))

    def _worker_status(self, ws: SchedWorker, msg: m.WorkerStatus, recs: Recs, sid: str) -> None:
        ws.paused = msg.status == "paused"

    def _add_keys(self, ws: SchedWorker, msg: m.AddKeys, recs: Recs, sid: str) -> None:
        for key, nbytes in msg.nbytes.items():
            ts = self.tasks.get(key)
            if ts is None or ts.state != "memory":
                self._free_on.setdefault(ws, {})[key] = None
                continue
            if ws not in ts.who_has:
                ts.who_has = _with(ts.who_has, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)

    def _handle_drop_replicas(self, ev: DropReplicas, recs: Recs) -> None:
        tasks, workers = self.tasks, self.workers
        for key, address in ev.replicas:
            ts, ws = tasks.get(key), workers.get(address)
            if ts is None or ws is None or ts.state != "memory" or ws not in ts.who_has or len(ts.who_has) < 2:
                continue
            if any(dts.processing_on is ws for dts in ts.dependents):
                continue  # a task sent there reads its input from there
            _without(ts.who_has, ws)
            ws.has_what.discard(ts)
            ws.nbytes -= max(ts.nbytes, 0)
            self._free_on.setdefault(ws, {})[key] = None

    def _handle_set_retiring(self, ev: SetRetiring, recs: Recs) -> None:
        for address in ev.addresses:
            ws = self.workers.get(address)
            if ws is not None:
                ws.retiring = ev.retiring

    def _handle_set_restrictions(self, ev: SetRestrictions, recs: Recs) -> None:
        for key, workers in ev.restrictions.items():
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.restrictions = frozenset(workers) if workers else None
            ts.loose = False
            if ts.state == "no-worker":
                recs[ts.key] = "queued"  # it may run somewhere now

    def _handle_recompute(self, ev: Recompute, recs: Recs) -> None:
        sid = ev.stimulus_id
        released = []
        for key in ev.keys:  # dependencies come before their dependents in `keys`
            ts = self.tasks.get(key)
            if ts is None or ts.spec is None:
                continue
            if ts.state == "memory":
                self._transition(ts, "released", sid, recs)
                released.append(ts)
            elif ts.state == "processing":
                self._transition(ts, "waiting", sid, recs)
        # dependents first: a dependent waiting again makes its released dependencies
        # needed (and recommends them), then those are made to wait too
        for ts in reversed(released):
            if ts.state == "released" and (ts.who_wants or ts.n_waiters):
                self._transition(ts, "waiting", sid, recs)

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
        _without(ws.long_running, ts)
        _without(ws.started, ts)
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
                ts.who_has = _with(ts.who_has, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)
        ts.n_waiting = 0
        if start != "memory":
            for dts in ts.dependents:
                if dts.state == "waiting":
                    dts.n_waiting -= 1
                    if not dts.n_waiting:
                        recs[dts.key] = "queued"
        if start in _ACTIVE:
            self._leave_active(ts, recs)
        self._report_done(ts, self._in_memory_msg(ts, inline) if ts.who_wants else None, recs)

    def _report_done(self, ts: SchedTask, msg: m.Message | None, recs: Recs) -> None:
        """`ts` finished (in memory or erred): tell the clients that want it, let the
        fire-and-forget pseudo-client go, and forget it if nothing needs it any more."""
        if ts.who_wants:
            for c in list(ts.who_wants):
                if c.hold:
                    if c.id == FIRE_AND_FORGET:
                        _without(ts.who_wants, c)
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

    # ------------------------------------------------------------------ transitions

    def _transitions(self, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        while recs:
            key, finish = recs.popitem()
            ts = tasks.get(key)
            if ts is not None:
                self._transition(ts, finish, sid, recs)

    def _transition(self, ts: SchedTask, finish: str, sid: str, recs: Recs) -> None:
        start = ts.state
        if start == finish:
            return
        if finish == "forgotten":
            # "forget if you can": release first, forget only once nothing refers to it
            if start != "released":
                if ts.who_wants or ts.n_waiters:
                    return
                self._transition(ts, "released", sid, recs)
                if ts.state != "released":
                    return
            if not self._forgettable(ts):
                return
            start = "released"
        func = self._TRANSITIONS.get((start, finish))
        if func is None:
            if (start, "released") in self._TRANSITIONS and ("released", finish) in self._TRANSITIONS:
                self._transition(ts, "released", sid, recs)
                self._transition(ts, finish, sid, recs)
                return
            raise InvalidTransition(ts.key, start, finish, self.story(ts.key))
        func(self, ts, sid, recs)
        self._log(ts, start, sid)

    def _log(self, ts: SchedTask, start: str, sid: str) -> None:
        self.transition_counter += 1
        self.story_log.append((ts.key, start, ts.state, sid, self.clock()))
        if self.observers:
            for obs in self.observers:
                obs.transition(ts, start, sid)

    def _t_released_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        if ts.spec is None:
            # data that only a client could provide, and it is gone
            self._cancel(ts, "lost-data", f"scattered data {ts.key!r} was lost", recs)
            return
        ts.state = "waiting"
        self._enter_active(ts)
        blamed = None
        n = 0
        for dts in ts.dependencies:
            state = dts.state
            if state == "memory":
                continue
            if state == "erred":
                blamed = dts
            n += 1
            if state == "released":
                recs[dts.key] = "waiting"
        ts.n_waiting = n
        if blamed is not None:
            self._blame(ts, blamed)
            recs[ts.key] = "erred"
        elif not n:
            recs[ts.key] = "queued"

    def _t_waiting_queued(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        if ts.n_waiting:  # a dependency was lost after this was recommended
            return
        ts.state = "queued"
        self.n_queued += 1
        self._tiebreak += 1
        heapq.heappush(self.queue, (ts.priority, self._tiebreak, ts))

    def _t_no_worker_queued(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_waiting_queued(ts, sid, recs)

    def _t_processing_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        """Rescheduled: worker lost, data missing, `Reschedule`, or a retry."""
        ws = ts.processing_on
        self._stop_processing(ts)
        if ws is not None and ws.address in self.workers:
            self._free_on.setdefault(ws, {})[ts.key] = None
        ts.state = "waiting"
        self._count_waiting(ts, recs)

    def _count_waiting(self, ts: SchedTask, recs: Recs) -> None:
        """Back to waiting inside the active states: recount missing dependencies."""
        n = 0
        for dts in ts.dependencies:
            if dts.state != "memory":
                n += 1
                if dts.state == "released":
                    recs[dts.key] = "waiting"
        ts.n_waiting = n
        if not n:
            recs[ts.key] = "queued"

    def _t_waiting_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.state = "erred"
        ts.n_waiting = 0
        self._erred(ts, recs)

    def _t_processing_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self._stop_processing(ts)
        ts.state = "erred"
        ts.exception_blame = None
        self._erred(ts, recs)

    def _erred(self, ts: SchedTask, recs: Recs) -> None:
        for dts in ts.dependents:
            if dts.state in ("waiting", "queued", "no-worker"):
                self._blame(dts, ts)
                recs[dts.key] = "erred"
        self._leave_active(ts, recs)  # every way into erred starts from an active state
        self._report_done(ts, self._erred_msg(ts) if ts.who_wants else None, recs)

    def _t_queued_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.n_queued -= 1
        self._t_waiting_erred(ts, sid, recs)

    def _t_no_worker_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_waiting_erred(ts, sid, recs)

    def _t_to_released(self, ts: SchedTask, recs: Recs) -> None:
        if ts.state in _ACTIVE:
            self._leave_active(ts, recs)
        ts.state = "released"
        ts.n_waiting = 0
        if self._forgettable(ts):
            recs[ts.key] = "forgotten"

    def _t_waiting_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self._t_to_released(ts, recs)

    def _t_queued_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        """A dependency of a queued task was lost: wait for it again."""
        self.n_queued -= 1
        ts.state = "waiting"  # its heap entry goes stale and is skipped
        self._count_waiting(ts, recs)

    def _t_queued_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.n_queued -= 1
        self._t_to_released(ts, recs)  # its heap entry goes stale and is skipped

    def _t_no_worker_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_to_released(ts, recs)

    def _t_processing_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ws = ts.processing_on
        self._stop_processing(ts)
        if ws is not None:
            self._free_on.setdefault(ws, {})[ts.key] = None
        self._t_to_released(ts, recs)

    def _t_memory_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        for ws in ts.who_has:
            ws.has_what.discard(ts)
            if ts.actor:
                _without(ws.actors, ts)
            ws.nbytes -= max(ts.nbytes, 0)
            self._free_on.setdefault(ws, {})[ts.key] = None
        ts.who_has = _EMPTY
        # dependents that still need this key (it was lost) must wait for it again
        for dts in ts.dependents:
            if dts.state == "waiting":
                dts.n_waiting += 1
            elif dts.state in ("queued", "processing"):
                recs[dts.key] = "waiting"
        self._t_to_released(ts, recs)

    def _t_erred_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.exception = ts.traceback = ts.exception_blame = None
        ts.exception_text = ""
        self._t_to_released(ts, recs)

    def _t_released_forgotten(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.state = "forgotten"
        del self.tasks[ts.key]
        if self.suspicious:
            self.suspicious.pop(ts.key, None)
        for dts in ts.dependencies:
            dts.dependents = _without_dependent(dts.dependents, ts)
            if dts.state == "released" and self._forgettable(dts):
                recs[dts.key] = "forgotten"
            elif not dts.n_waiters and not dts.who_wants and dts.state in ("memory", "erred"):
                recs[dts.key] = "forgotten"
        ts.dependencies = ()

    _TRANSITIONS: dict[tuple[str, str], Callable[[SchedulerState, SchedTask, str, Recs], None]] = {
        ("released", "waiting"): _t_released_waiting,
        ("released", "forgotten"): _t_released_forgotten,
        ("waiting", "queued"): _t_waiting_queued,
        ("waiting", "erred"): _t_waiting_erred,
        ("waiting", "released"): _t_waiting_released,
        ("queued", "erred"): _t_queued_erred,
        ("queued", "waiting"): _t_queued_waiting,
        ("queued", "released"): _t_queued_released,
        ("no-worker", "queued"): _t_no_worker_queued,
        ("no-worker", "erred"): _t_no_worker_erred,
        ("no-worker", "released"): _t_no_worker_released,
        ("processing", "waiting"): _t_processing_waiting,
        ("processing", "erred"): _t_processing_erred,
        ("processing", "released"): _t_processing_released,
        ("memory", "released"): _t_memory_released,
        ("erred", "released"): _t_erred_released,
    }

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

    def _t_queued_no_worker(self, ts: SchedTask, sid: str) -> None:
        """No live worker may run `ts` (restrictions, resources): it waits for one."""
        ts.state = "no-worker"
        self.n_queued -= 1
        self.unrunnable.add(ts)
        self._log(ts, "queued", sid)

    def _t_queued_processing(self, ts: SchedTask, sid: str, ws: SchedWorker) -> None:
        """Dispatch `ts` to `ws` (`compute-task`)."""
        pending_free = self._free_on.get(ws)
        if pending_free:  # freed earlier in this stimulus: the new run must not be freed
            pending_free.pop(ts.key, None)
        self.n_queued -= 1
        ts.state = "processing"
        ts.processing_on = ws
        self._run_id += 1
        ws.processing[ts] = run_id = self._run_id
        who_has = {}
        nbytes = {}
        for dts in ts.dependencies:
            who_has[dts.key] = tuple(w.address for w in dts.who_has)
            nbytes[dts.key] = dts.nbytes
        assert ts.spec is not None
        self._out.append(
            ToWorker(
                ws.address,
                m.ComputeTask(
                    ts.key, run_id, ts.func, ts.run_spec, ts.priority, who_has, nbytes,
                    ts.resources, bool(ts.who_wants), ts.actor,
                ),
            )
        )  # fmt: skip
        self._log(ts, "queued", sid)

    # ------------------------------------------------------------------ introspection

    def story(self, *keys: Key) -> list[tuple]:
        wanted = set(keys)
        return [entry for entry in self.story_log if entry[0] in wanted or entry[3] in wanted]

    def validate_state(self) -> None:
        def check(cond: bool, what: str, ts: Any = None) -> None:
            if not cond:
                story = self.story(ts.key) if isinstance(ts, SchedTask) else []
                raise InvalidState(f"{what}: {ts!r}\nstory: {story[-20:]}")

        for key, ts in self.tasks.items():
            check(ts.key == key, "key mismatch", ts)
            check(ts.state in _STATES, "unknown state", ts)
            for dts in ts.dependencies:
                check(dts.key in self.tasks and self.tasks[dts.key] is dts, "dependency forgotten", ts)
                check(ts in dts.dependents, "asymmetric dependency", ts)
            for dts in ts.dependents:
                check(ts in dts.dependencies, "asymmetric dependent", ts)
            active = sum(1 for d in ts.dependents if d.state in _ACTIVE)
            check(ts.n_waiters == active, f"n_waiters {ts.n_waiters} != {active} active dependents", ts)
            for cs in ts.who_wants:
                check(ts in cs.wants, "who_wants/wants mismatch", ts)
            state = ts.state
            if state == "processing":
                ws = ts.processing_on
                check(ws is not None and ws.address in self.workers and ts in ws.processing, "processing on unknown worker", ts)
                check(all(d.state == "memory" for d in ts.dependencies), "processing before dependencies", ts)
            else:
                check(ts.processing_on is None, "processing_on set", ts)
            if state == "memory":
                check(bool(ts.who_has), "in memory nowhere", ts)
                for ws in ts.who_has:
                    check(ts in ws.has_what, "who_has/has_what mismatch", ts)
            else:
                check(not ts.who_has, "who_has outside memory", ts)
            if state == "waiting":
                missing = sum(1 for d in ts.dependencies if d.state != "memory")
                check(ts.n_waiting == missing, f"n_waiting {ts.n_waiting} != {missing} missing dependencies", ts)
                check(missing > 0, "waiting on nothing: every dependency is in memory", ts)
            elif state != "erred":
                check(ts.n_waiting == 0, "n_waiting outside waiting", ts)
            if state == "queued":
                check(all(d.state == "memory" for d in ts.dependencies), "queued before dependencies", ts)
            if state == "no-worker":
                check(ts in self.unrunnable, "no-worker not in unrunnable", ts)
        queued = sum(1 for t in self.tasks.values() if t.state == "queued")
        check(self.n_queued == queued, f"n_queued {self.n_queued} != {queued}")
        for ts, victim in self.stealing.items():
            check(ts.state == "processing" and ts.processing_on is victim, "steal of a task not processing there", ts)
        for ws in self.workers.values():
            for ts in ws.processing:
                check(ts.processing_on is ws and ts.state == "processing", "worker processing mismatch", ts)
            for ts in ws.long_running:
                check(ts in ws.processing, "long-running task not processing here", ts)
            for ts in ws.started:
                check(ts in ws.processing, "started task not processing here", ts)
            for ts in ws.has_what:
                check(ws in ts.who_has, "has_what/who_has mismatch", ts)
            for ts in ws.actors:
                check(ts.actor and ts in ws.has_what, "actor not held by its worker", ts)
        for cs in self.clients.values():
            check(not cs.hold, "a hold among the clients", cs)
            for ts in cs.wants:
                check(cs in ts.who_wants and ts.key in self.tasks, "client wants unknown task", ts)
        for name, hs in self.holds.items():
            check(hs.hold and hs.id == name and name not in self.clients, "hold mismatch", hs)
            for ts in hs.wants:
                check(hs in ts.who_wants and ts.key in self.tasks, "hold wants unknown task", ts)

    #: edges taken directly by the code that has their arguments (the worker placement
    #: chose, a `task-finished` message, scattered data), each logged like any edge;
    #: `_transition` never takes them (placement decides when, not a recommendation)
    _DIRECT_TRANSITIONS: dict[tuple[str, str], Callable[..., None]] = {
        ("queued", "processing"): _t_queued_processing,
        ("queued", "no-worker"): _t_queued_no_worker,
        ("processing", "memory"): _t_processing_memory,
        ("released", "memory"): _t_released_memory,
    }
    _EVENT_HANDLERS: dict[type, Callable] = {
        AddClient: _handle_add_client,
        RemoveClient: _handle_remove_client,
        ClientMsg: _handle_client_msg,
        AddWorker: _handle_add_worker,
        RemoveWorker: _handle_remove_worker,
        WorkerMsg: _handle_worker_msg,
        DropReplicas: _handle_drop_replicas,
        SetRetiring: _handle_set_retiring,
        SetRestrictions: _handle_set_restrictions,
        Recompute: _handle_recompute,
        HoldKeys: _handle_hold_keys,
        ReleaseHold: _handle_release_hold,
        WantKeys: _handle_want_keys,
        Restart: _handle_restart,
    }
    _CLIENT_HANDLERS: dict[type, Callable] = {
        m.UpdateGraph: _update_graph,
        m.ReleaseKeys: _release_keys,
        m.DesireKeys: _desire_keys,
        m.CancelKeys: _cancel_keys,
        m.RetryKeys: _retry_keys,
        m.UpdateData: _update_data,
    }
    _WORKER_HANDLERS: dict[type, Callable] = {
        m.TaskFinished: _task_finished,
        m.TaskFailed: _task_failed,
        m.TaskStarted: _task_started,
        m.MissingData: _missing_data,
        m.RescheduleTask: _reschedule,
        m.AddKeys: _add_keys,
        m.StealResponse: _steal_response,
        m.LongRunning: _long_running,
        m.WorkerStatus: _worker_status,
    }


#: states in which a task still needs its dependencies' data
_ACTIVE = frozenset(["waiting", "queued", "no-worker", "processing"])

_STATES = frozenset(
    ["released", "waiting", "queued", "no-worker", "processing", "memory", "erred", "forgotten"]
)


def _missing_text(key: Key, dep: Key) -> str:
    return (
        f"Task {key!r} depends on {dep!r}, which the scheduler does not know "
        "(never submitted, or already released)"
    )
