"""The wire vocabulary: one typed record per op.

Every message that crosses a connection is one of these slotted dataclasses. A record
names its op once, on the class; on the wire it travels as the tuple
``(op, field1, field2, ...)`` inside a msgpack batch (see `framing`). `to_wire` and
`from_wire` are the only conversions. User data inside a message (task specs, results,
exceptions) is always a `Pickled` and is never unpickled by the scheduler.

Naming: ops are kebab-case verbs or facts (`compute-task`, `task-finished`).
Direction is given in each class's docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from shoal.protocol.serialize import Pickled

__all__ = ["Message", "OPS", "ProtocolError", "from_wire"]


class ProtocolError(ValueError):
    """A peer sent a message that is not part of the protocol."""


class Message:
    __slots__ = ()
    op: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]]

    def to_wire(self) -> tuple:
        return (self.op, *[getattr(self, f) for f in self._fields])


OPS: dict[str, type[Message]] = {}


def _message(op: str):
    def wrap(cls):
        cls = dataclasses.dataclass(slots=True)(cls)
        cls.op = op
        cls._fields = tuple(f.name for f in dataclasses.fields(cls))
        if op in OPS:  # pragma: no cover - a programming error
            raise RuntimeError(f"duplicate op {op!r}")
        OPS[op] = cls
        return cls

    return wrap


def from_wire(wire: Any) -> Message:
    """Decode one wire tuple; anything malformed raises `ProtocolError`."""
    try:
        cls = OPS[wire[0]]
    except (KeyError, TypeError, IndexError):
        raise ProtocolError(f"unknown message {str(wire)[:80]!r}") from None
    try:
        return cls(*wire[1:])
    except TypeError as e:
        raise ProtocolError(f"malformed {cls.op!r} message: {e}") from None


# --------------------------------------------------------------------------------------
# Request / reply: used on any connection for calls that return a value.


@_message("request")
class Request(Message):
    """Any peer -> any peer: call handler `name` with `kwargs`; answered by a `Reply`."""

    id: int
    name: str
    kwargs: dict


@_message("reply")
class Reply(Message):
    """Answer to `Request` `id`. On failure `value` is a `Pickled` exception."""

    id: int
    ok: bool
    value: Any


# --------------------------------------------------------------------------------------
# Client -> scheduler


@_message("register-client")
class RegisterClient(Message):
    client_id: str
    versions: dict


@_message("update-graph")
class UpdateGraph(Message):
    """Client -> scheduler: new tasks, and the keys this client holds futures for.

    `tasks` holds one tuple per task:
    ``(key, func_index, spec, dependencies, priority, annotations)`` where `func_index`
    points into `funcs` (a function shared by many tasks, pickled once) or is -1 when
    `spec` is a complete dask task node. `priority` is a tuple; `annotations` is None or
    a dict with any of ``workers, allow_other_workers, resources, retries``.
    """

    tasks: tuple
    funcs: tuple
    wanted: tuple


@_message("release-keys")
class ReleaseKeys(Message):
    """Client -> scheduler: the client holds no more futures for these keys."""

    keys: tuple


@_message("desire-keys")
class DesireKeys(Message):
    """Client -> scheduler: `client_id` (a real or pseudo client such as
    ``fire-and-forget``) wants these keys kept and computed."""

    keys: tuple
    client_id: str


@_message("cancel-keys")
class CancelKeys(Message):
    keys: tuple
    force: bool
    reason: str | None
    msg: str | None


@_message("retry-keys")
class RetryKeys(Message):
    keys: tuple


@_message("update-data")
class UpdateData(Message):
    """Client -> scheduler: data the client placed on workers itself (scatter).
    `who_has` maps key -> worker addresses; `nbytes` and `types` map key -> size, type name."""

    who_has: dict
    nbytes: dict
    types: dict


# --------------------------------------------------------------------------------------
# Scheduler -> client


@_message("key-in-memory")
class KeyInMemory(Message):
    """The key's result exists on `workers`; small results come `inline`."""

    key: Any
    type_name: str | None
    workers: tuple
    inline: Pickled | None


@_message("task-erred")
class TaskErred(Message):
    """`traceback` is a list of ``(filename, lineno, name)`` frames of the user's code."""

    key: Any
    exception: Pickled
    traceback: list | None
    text: str


@_message("cancelled-keys")
class CancelledKeys(Message):
    keys: tuple
    reason: str
    msg: str | None


#: `CancelledKeys.reason` when the scheduler forgets everything (`Client.restart`):
#: clients then drop these futures altogether
RESTART_REASON = "scheduler-restart"
RESTART_MSG = "Scheduler has restarted. Please re-run your work."


@_message("lost-data")
class LostData(Message):
    key: Any


@_message("task-retried")
class TaskRetried(Message):
    key: Any


@_message("topic-event")
class TopicEvent(Message):
    """An event logged on a topic this client subscribed to (`Client.subscribe_topic`):
    `msg` is plain msgpack data, `time` the scheduler's wall clock when it was logged."""

    topic: str
    time: float
    msg: Any


# --------------------------------------------------------------------------------------
# Scheduler -> worker


@_message("compute-task")
class ComputeTask(Message):
    """Run `key`. `who_has`/`nbytes` describe dependencies the worker may need to fetch.
    `inline` asks the worker to send a small result back inside `task-finished`."""

    key: Any
    run_id: int
    func: Pickled | None
    spec: Pickled
    #: one int, lower runs first (`shoal.scheduler.placement.priority_rank`)
    priority: int
    who_has: dict
    nbytes: dict
    resources: dict | None
    inline: bool
    #: the result is a stateful actor: keep the object here, serve a proxy of it
    actor: bool = False


@_message("steal-request")
class StealRequest(Message):
    """Give up `key` (this run) if it has not started; answer with `steal-response`."""

    key: Any
    run_id: int


@_message("free-keys")
class FreeKeys(Message):
    """Forget these keys: drop their data, abandon their tasks."""

    keys: tuple


# --------------------------------------------------------------------------------------
# Worker -> scheduler


@_message("register-worker")
class RegisterWorker(Message):
    address: str
    name: Any
    nthreads: int
    memory_limit: int
    resources: dict
    pid: int
    local_directory: str
    versions: dict
    nanny: str | None


@_message("task-finished")
class TaskFinished(Message):
    key: Any
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float
    inline: Pickled | None


@_message("task-failed")
class TaskFailed(Message):
    """`traceback` is a list of ``(filename, lineno, name)`` frames of the user's code."""

    key: Any
    run_id: int
    exception: Pickled
    traceback: list | None
    text: str
    start: float
    stop: float


@_message("missing-data")
class MissingData(Message):
    """The worker could not get `dep` from any of `holders`; it gave up on `key`."""

    key: Any
    run_id: int
    dep: Any
    holders: tuple


@_message("task-started")
class TaskStarted(Message):
    """These tasks (parallel tuples of keys and run ids) took a thread of the worker's
    pool: they are executing, not merely queued. Sent, and flushed, before the threads
    get them, so a task that kills its worker at once is still known to have run."""

    keys: tuple
    run_ids: tuple


@_message("long-running")
class LongRunning(Message):
    """The task left its worker's thread pool (`secede`): it no longer takes a slot."""

    key: Any
    run_id: int


@_message("reschedule")
class RescheduleTask(Message):
    """The task raised `Reschedule` (or its worker handed it back): run it again."""

    key: Any
    run_id: int


@_message("steal-response")
class StealResponse(Message):
    """`released`: the worker dropped the task before it started, so it may run elsewhere."""

    key: Any
    run_id: int
    released: bool


@_message("add-keys")
class AddKeys(Message):
    """The worker now also holds these keys (fetched replicas): key -> nbytes."""

    nbytes: dict


@_message("worker-status")
class WorkerStatus(Message):
    """worker -> scheduler: the worker paused (`"paused"`: memory is above its pause
    threshold, or it cannot spill; it starts no task and fetches no data) or resumed
    (`"running"`)."""

    status: str


# --------------------------------------------------------------------------------------
# Actors: client or task -> the worker holding the actor, and back (never the scheduler)


@_message("actor-call")
class ActorCall(Message):
    """Call method `name` of actor `key` with `args` (a `Pickled` ``(args, kwargs)``, or
    None for no arguments), or with `attribute` read attribute `name`. Answered by an
    `actor-result` with the same `id` on the same connection."""

    id: int
    key: Any
    name: str
    args: Pickled | None
    attribute: bool


@_message("actor-result")
class ActorResult(Message):
    """Outcome of `actor-call` `id`: the pickled value, or with `ok` false the pickled
    exception the method raised."""

    id: int
    ok: bool
    value: Pickled
