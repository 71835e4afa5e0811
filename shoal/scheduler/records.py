"""The scheduler's records: one per task (`SchedTask`), worker (`SchedWorker`) and client
or named hold (`SchedClient`), and the small-set helpers that keep a million of them light.

Mutated only by the state machine (`state.py` and its mixins); everyone else reads them.
PURE: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled
from shoal.utils import Key, key_prefix

#: the named hold of `Client.fire_and_forget`: keeps keys alive until they finish
FIRE_AND_FORGET = "fire-and-forget"

#: how many key prefixes' task durations are remembered (graphs whose keys have no
#: shared prefix would otherwise add one entry per task)
MAX_PREFIXES = 10_000

#: Shared stand-in for an empty set: most tasks' relation sets are empty most of the
#: time, and an empty `set()` costs 216 bytes. `with_member` makes a real set on first insert.
EMPTY: frozenset = frozenset()


#: how many distinct key parts (layer names, chunk indices) are shared before the table
#: starts over
MAX_KEY_PARTS = 100_000


def shared_parts(key: tuple, parts: dict) -> tuple:
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
            out.append(shared_parts(part, parts))
        else:
            out.append(part)
    return tuple(out)


def with_member(s: Any, item: Any) -> set:
    """`s` plus `item`, as a mutable set (store the result back)."""
    if s is EMPTY:
        return {item}
    s.add(item)
    return s


#: `dependents` stays a tuple up to this many entries (a 1-item tuple costs 48 bytes, a
#: list 72, a set 216; most tasks have one or two dependents), then becomes a set
_SMALL = 8


def with_dependent(s: Any, item: Any) -> tuple | set:
    """`s` plus `item` (store the result back): a short tuple, or a set once long."""
    if s is EMPTY:
        return (item,)
    if type(s) is tuple:
        if item in s:
            return s
        if len(s) < _SMALL:
            return (*s, item)
        s = set(s)
    s.add(item)
    return s


def without_dependent(s: Any, item: Any) -> Any:
    """`s` without `item` (store the result back)."""
    if type(s) is tuple:
        if item in s:
            rest = tuple(x for x in s if x is not item)
            return rest if rest else EMPTY
        return s
    if s:
        s.discard(item)
    return s


def without_member(s: Any, item: Any) -> None:
    if s:
        s.discard(item)




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
        # the sets below start as the shared EMPTY and become real sets on first insert
        self.dependents: tuple[SchedTask, ...] | set[SchedTask] = EMPTY  # type: ignore[assignment]
        #: while waiting: how many dependencies are not in memory yet
        self.n_waiting = 0
        #: how many dependents are active (waiting, queued, no-worker, processing) and so
        #: still need this task's result
        self.n_waiters = 0
        self.who_has: set[SchedWorker] = EMPTY  # type: ignore[assignment]
        self.processing_on: SchedWorker | None = None
        self.who_wants: set[SchedClient] = EMPTY  # type: ignore[assignment]
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
        self.long_running: set[SchedTask] = EMPTY  # type: ignore[assignment]
        #: processing tasks the worker reported as started in a thread (`task-started`):
        #: if the worker dies, these are suspected of killing it; queued ones are not
        self.started: set[SchedTask] = EMPTY  # type: ignore[assignment]
        self.has_what: set[SchedTask] = set()
        self.nbytes = 0
        self.added = now
        #: actor tasks whose object lives here (other holders only have proxies)
        self.actors: set[SchedTask] = EMPTY  # type: ignore[assignment]
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


#: states in which a task still needs its dependencies' data
ACTIVE = frozenset(["waiting", "queued", "no-worker", "processing"])

STATES = frozenset(
    ["released", "waiting", "queued", "no-worker", "processing", "memory", "erred", "forgotten"]
)
