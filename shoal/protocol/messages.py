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
import reprlib
from typing import Any, ClassVar

from shoal.protocol.checks import (
    anything, boolean, dict_of, integer, is_key, key_map, keys, nonneg_int, number, one_of, opt, pickled, plain_dict,
    pos_int, seq_of, string, msgpack_data,
)  # fmt: skip
from shoal.protocol.serialize import Pickled

__all__ = ["ANY", "CLIENT", "Message", "OPS", "PEER", "ProtocolError", "SCHEDULER", "WORKER", "from_wire"]

#: who may send a message (`Message.sender`): the scheduler accepts `CLIENT` messages
#: only from connections that registered as clients, `WORKER` ones only from workers
CLIENT, WORKER, SCHEDULER, PEER, ANY = "client", "worker", "scheduler", "peer", "any"


class ProtocolError(ValueError):
    """A peer sent a message that is not part of the protocol."""


class Message:
    __slots__ = ()
    op: ClassVar[str]
    #: the role whose connections may send this message (see `CLIENT` ...)
    sender: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]]
    #: one check per field (`shoal.protocol.checks`), run by `from_wire`
    _checks: ClassVar[tuple[Any, ...]]
    _n_required: ClassVar[int]

    def to_wire(self) -> tuple:
        return (self.op, *[getattr(self, f) for f in self._fields])


OPS: dict[str, type[Message]] = {}


def _message(op: str, sender: str, checks: tuple):
    def wrap(cls):
        cls = dataclasses.dataclass(slots=True)(cls)
        cls.op = op
        cls.sender = sender
        fields = dataclasses.fields(cls)
        cls._fields = tuple(f.name for f in fields)
        if len(checks) != len(fields) or op in OPS:  # pragma: no cover - a programming error
            raise RuntimeError(f"bad message definition {op!r}")
        cls._checks = checks
        cls._n_required = sum(1 for f in fields if f.default is dataclasses.MISSING)
        OPS[op] = cls
        return cls

    return wrap


def from_wire(wire: Any) -> Message:
    """Decode one wire tuple into its record and check every field; anything malformed
    (unknown op, wrong arity, a field of the wrong type or range, a key that is not a
    key) raises `ProtocolError`."""
    try:
        cls = OPS[wire[0]]
    except (KeyError, TypeError, IndexError):
        raise ProtocolError(f"unknown message {str(wire)[:80]!r}") from None
    n = len(wire) - 1
    if not cls._n_required <= n <= len(cls._checks):
        raise ProtocolError(f"malformed {cls.op!r} message: {n} fields, expected {len(cls._checks)}")
    fields = wire[1:]
    fast = _FAST.get(cls)
    if fast is not None and n == len(cls._checks) and fast(*fields):
        return cls(*fields)
    for check, value in zip(cls._checks, fields):
        if not check(value):
            name = cls._fields[fields.index(value) if type(fields) is tuple else 0]
            raise ProtocolError(f"malformed {cls.op!r} message: bad {name!r}: {reprlib.repr(value)}")
    return cls(*fields)


def _key(v: Any) -> bool:
    return type(v) is str or is_key(v)


_INF = float("inf")


def _flat_key(k: Any) -> bool:
    """`is_key`, with the common keys (a str, or a tuple of str and int parts) tested
    without a call per part."""
    t = type(k)
    if t is str:
        return True
    if t is tuple:
        for part in k:
            tp = type(part)
            if tp is not str and tp is not int and not is_key(part, 1):
                return False
        return True
    return is_key(k)


def _bytes(v: Any) -> bool:
    return type(v) is bytes


def _address(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= 1024 and "://" in v


def _status(v: Any) -> bool:
    return v == "paused" or v == "running"


_ANNOTATIONS = {
    "workers": opt(one_of(string, seq_of(one_of(string, integer)))),
    "allow_other_workers": anything,
    "resources": opt(dict_of(string, number)),
    "retries": opt(nonneg_int),
    "actor": anything,
}


def _graph_tasks(tasks: Any) -> bool:
    """`UpdateGraph.tasks`: tuples ``(key, func_index, spec, dependencies, priority,
    annotations)``. Checked per task on every graph, so the loop is written out: the
    common task (a str or flat tuple key, a few str/tuple dependencies, int priorities,
    no annotations) costs a few type tests."""
    if type(tasks) is not tuple and type(tasks) is not list:
        return False
    for t in tasks:
        if type(t) is not tuple or len(t) != 6:
            return False
        key, func_index, spec, deps, priority, ann = t
        if not _flat_key(key):
            return False
        if type(func_index) is not int or func_index < -1 or type(spec) is not Pickled:
            return False
        if type(deps) is not tuple and type(deps) is not list:
            return False
        for d in deps:
            if not _flat_key(d) or d == key:
                return False
        if type(priority) is not tuple and type(priority) is not list:
            return False
        for p in priority:
            if type(p) is not int and not number(p):
                return False
        if ann is not None:
            if type(ann) is not dict:
                return False
            for name, value in ann.items():
                check = _ANNOTATIONS.get(name)
                if check is not None and not check(value):
                    return False
    return True


def _fast_keys(keys: Any) -> bool:
    if type(keys) is not tuple and type(keys) is not list:
        return False
    for k in keys:
        if not _flat_key(k):
            return False
    return True


# The hot messages' checks written out (the same checks as their `_checks`, without a
# call per field); a message they refuse goes through the generic loop, which names the
# bad field.


def _fast_task_finished(key, run_id, nbytes, type_name, start, stop, inline=None) -> bool:  # noqa: ANN001
    return (
        _flat_key(key) and type(run_id) is int and type(nbytes) is int
        and (type_name is None or (type(type_name) is str and len(type_name) <= 1 << 20))
        and (type(start) is int or (type(start) is float and -_INF < start < _INF))
        and (type(stop) is int or (type(stop) is float and -_INF < stop < _INF))
        and (inline is None or type(inline) is Pickled)
    )  # fmt: skip


def _fast_task_started(keys, run_ids) -> bool:  # noqa: ANN001
    if not _fast_keys(keys) or (type(run_ids) is not tuple and type(run_ids) is not list):
        return False
    for r in run_ids:
        if type(r) is not int:
            return False
    return True


def _fast_key_in_memory(key, type_name, workers, inline) -> bool:  # noqa: ANN001
    if not _flat_key(key) or (type_name is not None and type(type_name) is not str):
        return False
    if inline is not None and type(inline) is not Pickled:
        return False
    if type(workers) is not tuple and type(workers) is not list:
        return False
    for w in workers:
        if type(w) is not str:
            return False
    return True


def _fast_compute_task(key, run_id, func, spec, priority, who_has, nbytes, resources, send_inline, actor=False) -> bool:  # noqa: ANN001
    if not _flat_key(key) or type(run_id) is not int or type(priority) is not int:
        return False
    if (func is not None and type(func) is not Pickled and type(func) is not bytes) or (
        type(spec) is not Pickled and type(spec) is not bytes
    ):
        return False
    if type(send_inline) is not bool or type(actor) is not bool or type(who_has) is not dict or type(nbytes) is not dict:
        return False
    for k, holders in who_has.items():
        if not _flat_key(k) or (type(holders) is not tuple and type(holders) is not list):
            return False
        for h in holders:
            if type(h) is not str:
                return False
    for k, n in nbytes.items():
        if not _flat_key(k) or type(n) is not int:
            return False
    return resources is None or _resources(resources)


# --------------------------------------------------------------------------------------
# Request / reply: used on any connection for calls that return a value.


@_message("request", ANY, (integer, string, plain_dict,))
class Request(Message):
    """Any peer -> any peer: call handler `name` with `kwargs`; answered by a `Reply`."""

    id: int
    name: str
    kwargs: dict


@_message("reply", ANY, (integer, boolean, anything,))
class Reply(Message):
    """Answer to `Request` `id`. On failure `value` is a `Pickled` exception."""

    id: int
    ok: bool
    value: Any


# --------------------------------------------------------------------------------------
# Client -> scheduler


@_message("register-client", CLIENT, (string, plain_dict,))
class RegisterClient(Message):
    client_id: str
    versions: dict


@_message("update-graph", CLIENT, (_graph_tasks, seq_of(pickled), keys,))
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


@_message("release-keys", CLIENT, (keys,))
class ReleaseKeys(Message):
    """Client -> scheduler: the client holds no more futures for these keys."""

    keys: tuple


@_message("desire-keys", CLIENT, (keys, string,))
class DesireKeys(Message):
    """Client -> scheduler: `client_id` (a real or pseudo client such as
    ``fire-and-forget``) wants these keys kept and computed."""

    keys: tuple
    client_id: str


@_message("cancel-keys", CLIENT, (keys, boolean, opt(string), opt(string),))
class CancelKeys(Message):
    keys: tuple
    force: bool
    reason: str | None
    msg: str | None


@_message("retry-keys", CLIENT, (keys,))
class RetryKeys(Message):
    keys: tuple


@_message("update-data", CLIENT, (key_map(seq_of(string)), key_map(number), key_map(opt(string)),))
class UpdateData(Message):
    """Client -> scheduler: data the client placed on workers itself (scatter).
    `who_has` maps key -> worker addresses; `nbytes` and `types` map key -> size, type name."""

    who_has: dict
    nbytes: dict
    types: dict


# --------------------------------------------------------------------------------------
# Scheduler -> client


@_message("key-in-memory", SCHEDULER, (_key, opt(string), seq_of(string), opt(pickled),))
class KeyInMemory(Message):
    """The key's result exists on `workers`; small results come `inline`."""

    key: Any
    type_name: str | None
    workers: tuple
    inline: Pickled | None


@_message("task-erred", SCHEDULER, (_key, pickled, anything, string,))
class TaskErred(Message):
    """`traceback` is a list of ``(filename, lineno, name)`` frames of the user's code."""

    key: Any
    exception: Pickled
    traceback: list | None
    text: str


@_message("cancelled-keys", SCHEDULER, (keys, string, opt(string),))
class CancelledKeys(Message):
    keys: tuple
    reason: str
    msg: str | None


#: `CancelledKeys.reason` when the scheduler forgets everything (`Client.restart`):
#: clients then drop these futures altogether
RESTART_REASON = "scheduler-restart"
RESTART_MSG = "Scheduler has restarted. Please re-run your work."


@_message("lost-data", SCHEDULER, (_key,))
class LostData(Message):
    key: Any


@_message("key-moved", SCHEDULER, (_key, seq_of(string)))
class KeyMoved(Message):
    """A worker holding the key's result was lost; it now lives on `workers` only."""

    key: Any
    workers: tuple


@_message("task-retried", SCHEDULER, (_key,))
class TaskRetried(Message):
    key: Any


@_message("topic-event", SCHEDULER, (string, number, anything,))
class TopicEvent(Message):
    """An event logged on a topic this client subscribed to (`Client.subscribe_topic`):
    `msg` is plain msgpack data, `time` the scheduler's wall clock when it was logged."""

    topic: str
    time: float
    msg: Any


# --------------------------------------------------------------------------------------
# Scheduler -> worker


@_message("compute-task", SCHEDULER, (_key, integer, opt(one_of(pickled, _bytes)), one_of(pickled, _bytes), integer, key_map(seq_of(string)), key_map(integer), opt(dict_of(string, number)), boolean, boolean,))
class ComputeTask(Message):
    """Run `key`. `who_has`/`nbytes` describe dependencies the worker may need to fetch.
    `send_inline` (a client wants the result) asks the worker to send a small result back
    inside `task-finished` (its `inline` field)."""

    key: Any
    run_id: int
    func: Pickled | None
    spec: Pickled
    #: one int, lower runs first (`shoal.scheduler.placement.priority_rank`)
    priority: int
    who_has: dict
    nbytes: dict
    resources: dict | None
    send_inline: bool
    #: the result is a stateful actor: keep the object here, serve a proxy of it
    actor: bool = False


@_message("steal-request", SCHEDULER, (_key, integer,))
class StealRequest(Message):
    """Give up `key` (this run) if it has not started; answer with `steal-response`."""

    key: Any
    run_id: int


@_message("free-keys", SCHEDULER, (keys,))
class FreeKeys(Message):
    """Forget these keys: drop their data, abandon their tasks."""

    keys: tuple


# --------------------------------------------------------------------------------------
# Worker -> scheduler


@_message("register-worker", WORKER, (_address, msgpack_data, pos_int, opt(nonneg_int), dict_of(string, number), integer, string, plain_dict, opt(string),))
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


@_message("task-finished", WORKER, (_key, integer, integer, opt(string), number, number, opt(pickled),))
class TaskFinished(Message):
    key: Any
    run_id: int
    nbytes: int
    type_name: str
    start: float
    stop: float
    inline: Pickled | None


@_message("task-failed", WORKER, (_key, integer, pickled, anything, string, number, number,))
class TaskFailed(Message):
    """`traceback` is a list of ``(filename, lineno, name)`` frames of the user's code."""

    key: Any
    run_id: int
    exception: Pickled
    traceback: list | None
    text: str
    start: float
    stop: float


@_message("missing-data", WORKER, (_key, integer, _key, seq_of(string),))
class MissingData(Message):
    """The worker could not get `dep` from any of `holders`; it gave up on `key`."""

    key: Any
    run_id: int
    dep: Any
    holders: tuple


@_message("task-started", WORKER, (keys, seq_of(integer),))
class TaskStarted(Message):
    """These tasks (parallel tuples of keys and run ids) took a thread of the worker's
    pool: they are executing, not merely queued. Sent, and flushed, before the threads
    get them, so a task that kills its worker at once is still known to have run."""

    keys: tuple
    run_ids: tuple


@_message("long-running", WORKER, (_key, integer,))
class LongRunning(Message):
    """The task left its worker's thread pool (`secede`): it no longer takes a slot."""

    key: Any
    run_id: int


@_message("reschedule", WORKER, (_key, integer,))
class RescheduleTask(Message):
    """The task raised `Reschedule` (or its worker handed it back): run it again."""

    key: Any
    run_id: int


@_message("steal-response", WORKER, (_key, integer, boolean,))
class StealResponse(Message):
    """`released`: the worker dropped the task before it started, so it may run elsewhere."""

    key: Any
    run_id: int
    released: bool


@_message("add-keys", WORKER, (key_map(integer),))
class AddKeys(Message):
    """The worker now also holds these keys (fetched replicas): key -> nbytes."""

    nbytes: dict


@_message("worker-status", WORKER, (_status,))
class WorkerStatus(Message):
    """worker -> scheduler: the worker paused (`"paused"`: memory is above its pause
    threshold, or it cannot spill; it starts no task and fetches no data) or resumed
    (`"running"`)."""

    status: str


# --------------------------------------------------------------------------------------
# Actors: client or task -> the worker holding the actor, and back (never the scheduler)


@_message("actor-call", PEER, (integer, _key, string, opt(pickled), boolean,))
class ActorCall(Message):
    """Call method `name` of actor `key` with `args` (a `Pickled` ``(args, kwargs)``, or
    None for no arguments), or with `attribute` read attribute `name`. Answered by an
    `actor-result` with the same `id` on the same connection."""

    id: int
    key: Any
    name: str
    args: Pickled | None
    attribute: bool


@_message("actor-result", PEER, (integer, boolean, pickled,))
class ActorResult(Message):
    """Outcome of `actor-call` `id`: the pickled value, or with `ok` false the pickled
    exception the method raised."""

    id: int
    ok: bool
    value: Pickled


_resources = dict_of(string, number)

_FAST = {
    ComputeTask: _fast_compute_task, TaskFinished: _fast_task_finished, TaskStarted: _fast_task_started, KeyInMemory: _fast_key_in_memory,
    ReleaseKeys: _fast_keys, FreeKeys: _fast_keys,
}  # fmt: skip
