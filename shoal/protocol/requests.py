"""The request/reply vocabulary of the scheduler: one typed record per named operation.

A `Request` message names an operation (``who_has``, ``sync_semaphore_acquire``, ...)
and carries its arguments as keyword arguments. Each operation the scheduler serves has
a record here: its argument fields, the check each field must pass
(`shoal.protocol.checks`), and the roles whose connections may call it (`CLIENT`,
`WORKER`, `NANNY`, or `ANONYMOUS` for a connection that has not said who it is).
`check_request` runs before the handler: a call that fails it closes the connection
(see `shoal.rpc.Peer.reject`), so no handler ever sees a bad argument. Arguments not
declared here are refused; an argument left out takes the handler's default.

Operations that extensions add at run time may be declared the same way with `declare`
(then they are checked like the built-in ones); undeclared, they may be called by
clients and workers (on the scheduler; by any peer on a worker) with string-named
arguments, and the extension checks its own arguments.
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar

from shoal.protocol.messages import Reply, Request
from shoal.protocol.checks import (
    anything, boolean, integer, is_key, key_map, keys, msgpack_data, number, one_of, opt, pickled, seq_of,
    string,
)  # fmt: skip

__all__ = [
    "ANONYMOUS", "CLIENT", "NANNY", "NANNY_REQUESTS", "REQUESTS", "WORKER", "WORKER_REQUESTS", "RequestRecord",
    "check_packet", "check_request", "declare",
]  # fmt: skip

CLIENT, WORKER, NANNY, ANONYMOUS = "client", "worker", "nanny", None
_ANY_ROLE = frozenset({CLIENT, WORKER, NANNY, ANONYMOUS})
_C = frozenset({CLIENT})
_CW = frozenset({CLIENT, WORKER})


class RequestRecord:
    """Base of the request records: `name`, `roles` and one check per field."""

    __slots__ = ()
    name: ClassVar[str]
    roles: ClassVar[frozenset]
    checks: ClassVar[dict[str, Any]]


#: operations the scheduler serves
REQUESTS: dict[str, type[RequestRecord]] = {}
#: operations a worker serves (to the scheduler, clients and other workers alike: a
#: worker does not know who connected, so any authenticated peer may call them)
WORKER_REQUESTS: dict[str, type[RequestRecord]] = {}
#: operations a nanny serves (on its connection to the scheduler)
NANNY_REQUESTS: dict[str, type[RequestRecord]] = {}


def _key(v: Any) -> bool:
    return type(v) is str or is_key(v)


_keys_or_none = opt(keys)
_workers = opt(one_of(string, seq_of(msgpack_data)))
_opt_int = opt(integer)
_opt_num = opt(number)
#: a primitive's name: a key, or (from an in-process peer) a list of key parts
_name = one_of(_key, seq_of(_key))
_names = one_of(_key, seq_of(_name))


def _op(op: str, roles: frozenset, /, _table: dict = REQUESTS, **checks: Any) -> type[RequestRecord]:
    # a plain class, not a dataclass: records are looked up, never instantiated, and
    # ~100 dataclasses cost ~50 ms of every process's start-up
    cls = type(
        "".join(p.title() for p in op.split("_")),
        (RequestRecord,),
        {"__slots__": (), "__module__": __name__, "__doc__": f"``{op}({', '.join(checks)})``",
         "name": op, "roles": roles, "checks": checks},
    )  # fmt: skip
    _table[op] = cls
    return cls


def declare(op: str, roles: Any = None, /, *, table: str = "scheduler", **checks: Any) -> type[RequestRecord]:
    """Declare the typed record of an extension's operation `op`: who may call it
    (`roles`, an iterable of `CLIENT`, `WORKER`, `NANNY`, `ANONYMOUS`; default clients
    and workers) and one check (`shoal.protocol.checks`) per argument. `table` is
    ``"scheduler"``, ``"worker"`` or ``"nanny"``: who serves it."""
    tables = {"scheduler": REQUESTS, "worker": WORKER_REQUESTS, "nanny": NANNY_REQUESTS}
    return _op(op, frozenset(roles) if roles is not None else _CW, _table=tables[table], **checks)


def check_packet(msgs: list, table: dict, sender: str | None, where: str) -> str | None:
    """Why a decoded packet may not be handled by a server that does not know who its
    peer is (a worker, a nanny): requests must pass `check_request` against `table`;
    other messages must be ones `sender` sends (None: none but replies). None: it may."""
    for msg in msgs:
        t = type(msg)
        if t is Request:
            problem = check_request(msg.name, msg.kwargs, None, table)
            if problem is not None:
                return problem
        elif t is not Reply and msg.sender != sender:
            return f"{msg.op!r} is not a message {where} takes"
    return None


def check_request(name: str, kwargs: dict, role: str | None, table: dict = REQUESTS) -> str | None:
    """None if a peer of `role` may call `name` (an operation of `table`) with `kwargs`,
    else why not."""
    cls = table.get(name)
    if cls is None:
        if role is ANONYMOUS and table is REQUESTS:
            return f"operation {name!r} before saying who it is"
        for k in kwargs:
            if type(k) is not str:
                return f"bad argument {reprlib.repr(k)} of {name!r}"
        return None  # an extension's operation: the extension checks its arguments
    if role not in cls.roles:
        return f"a {role or 'connection that has not registered'} may not call {name!r}"
    checks = cls.checks
    for k, v in kwargs.items():
        check = checks.get(k)
        if check is None:
            return f"{name!r} takes no argument {reprlib.repr(k)}"
        if not check(v):
            return f"bad argument {k!r} of {name!r}: {reprlib.repr(v)}"
    return None


# ---------------------------------------------------------------------------- queries

_op("identity", _ANY_ROLE, n_workers=_opt_int)
_op("who_has", _ANY_ROLE, keys=_keys_or_none)
_op("has_what", _ANY_ROLE, workers=_workers)
_op("nthreads", _ANY_ROLE, workers=_workers)
_op("ncores_running", _ANY_ROLE, workers=_workers)
_op("processing", _ANY_ROLE, workers=_workers)
_op("story", _CW, keys=opt(seq_of(_key)))
_op("task_spec", _CW, key=_key, blame=boolean)
_op("get_task_stream", _CW, start=_opt_num, stop=_opt_num, count=_opt_int, since=opt(msgpack_data))
_op("versions", _ANY_ROLE, packages=opt(seq_of(string)))
_op("key_versions", _ANY_ROLE)
_op("adaptive_target", _C, target_duration=number)
_op("workers_to_close", _C, target=_opt_int, n=_opt_int, attribute=string)
_op("get_events", _CW, topic=opt(string))
_op("nbytes", _C, keys=_keys_or_none, summary=boolean)
_op("call_stack", _C, keys=_keys_or_none)
_op("cluster_story", _C, keys=seq_of(_key), on_error=string)
_op("dump_cluster_state", _C, exclude=opt(seq_of(string)), filename=opt(string), format=string,
    storage_options=opt(msgpack_data))  # fmt: skip
_op("benchmark_hardware", _C)
_op("get_scheduler_logs", _C, n=_opt_int)
_op("get_worker_logs", _C, n=_opt_int, workers=_workers, nanny=boolean)
_op("profile", _C, key=opt(_key), start=_opt_num, stop=_opt_num, workers=_workers, merge_workers=boolean,
    scheduler=boolean, server=boolean)  # fmt: skip
_op("memory_history", _C, start=_opt_num, stop=_opt_num, workers=_workers)

# ---------------------------------------------------------------------------- client calls

_op("run_on_scheduler", _C, function=pickled, args=pickled, wait=boolean)
_op("broadcast", _C, name=string, kwargs=anything, workers=_workers)
_op("progress_start", _C, keys=keys, complete=boolean)
_op("progress_poll", _C, watch_id=integer, wait=number)
_op("progress_stop", _C, watch_id=integer)
_op("task_metadata_start", _C)
_op("task_metadata_stop", _C, watch_id=integer)
_op("subscribe_topic", _C, topics=one_of(string, seq_of(string)))
_op("unsubscribe_topic", _C, topics=one_of(string, seq_of(string)))
_op("restart", _C, timeout=number, wait_for_workers=boolean)
_op("restart_workers", _C, workers=_workers, timeout=number, on_error=string)
_op("terminate", _C)
_op("replicate", _C, keys=keys, n=_opt_int, workers=_workers)
_op("rebalance", _C, keys=_keys_or_none, workers=_workers)
_op("retire_workers", _C, workers=_workers, names=_workers, close_workers=boolean, remove=boolean, n=_opt_int,
    timeout=number)  # fmt: skip
_op("set_metadata", _C, keys=seq_of(_key), value=anything)
_op("get_metadata", _C, keys=seq_of(_key), has_default=boolean, default=anything)
_op("add_worker_setup", _C, name=string, function=pickled, args=pickled, idempotent=boolean)
_op("remove_worker_setup", _C, name=opt(string), function=opt(pickled), args=opt(pickled), missing=opt(string))
_op("subscribe_logs", _C, logger_name=opt(string), subscribe=boolean)
_op("register_scheduler_plugin", _C, plugin=pickled, name=opt(string), idempotent=boolean)
_op("unregister_scheduler_plugin", _C, name=string)
_op("register_nanny_plugin", _C, plugin=pickled, name=opt(string), idempotent=boolean)
_op("unregister_nanny_plugin", _C, name=string)
_op("memory_sampler_start", _C, measure=string, interval=number)
_op("memory_sampler_stop", _C, key=string)
_op("publish_put", _C, items=anything, override=boolean)
_op("publish_get", _C, names=seq_of(_key), strict=boolean)
_op("publish_delete", _C, names=seq_of(_key))
_op("publish_list", _C)

# coordination primitives (`shoal.sync`): names are keys, leases and ids strings
_op("sync_variable_set", _C, name=_name, value=anything, key=opt(_key))
_op("sync_variable_get", _C, name=_name, timeout=_opt_num)
_op("sync_variable_delete", _C, name=_name)
_op("sync_event_set", _C, name=_name)
_op("sync_event_clear", _C, name=_name)
_op("sync_event_is_set", _C, name=_name)
_op("sync_event_wait", _C, name=_name, timeout=_opt_num)
_op("sync_semaphore_acquire", _C, name=_name, max_leases=integer, lease_id=string, timeout=_opt_num)
_op("sync_semaphore_release", _C, name=_name, lease_id=string)
_op("sync_semaphore_value", _C, name=_name)
_op("sync_semaphore_locked", _C, name=_name)
_op("sync_queue_put", _C, name=_name, value=anything, key=opt(_key), maxsize=integer, timeout=_opt_num)
_op("sync_queue_get", _C, name=_name, timeout=_opt_num, batch=one_of(boolean, integer), maxsize=integer)
_op("sync_queue_ack", _C, name=_name, keys=keys)
_op("sync_queue_qsize", _C, name=_name)
_op("sync_multilock_acquire", _C, name=_name, names=_names, request_id=string, timeout=_opt_num, num_locks=_opt_int)
_op("sync_multilock_release", _C, name=_name, request_id=string)
_op("sync_multilock_locked", _C, name=_name, names=_names)

# ---------------------------------------------------------------------------- workers, nannies

_op("heartbeat", frozenset({WORKER}), metrics=opt(msgpack_data))
_op("log_event", frozenset({CLIENT, WORKER, NANNY}), topic=one_of(string, seq_of(string)), msg=msgpack_data)
_op("forward_log", frozenset({WORKER, NANNY}), record=msgpack_data)
_op("register_nanny", frozenset({ANONYMOUS}), nanny_id=string)
_op("worker_exit_reason", frozenset({NANNY}), worker=string, reason=string)
_op("retire_self", frozenset({WORKER}), close=boolean)


# ---------------------------------------------------------------------------- served by workers


def _w(op: str, **checks: Any) -> None:
    _op(op, _ANY_ROLE, _table=WORKER_REQUESTS, **checks)


_w("get_data", keys=keys)
_w("update_data", data=key_map(pickled))
_w("run", function=pickled, args=pickled, wait=boolean)
_w("task_stream", since=_opt_int, start=_opt_num, stop=_opt_num, count=_opt_int)
_w("profile", start=_opt_num, stop=_opt_num, key=opt(_key), server=boolean)
_w("memory_history", start=_opt_num, stop=_opt_num)
_w("acquire_replicas", who_has=key_map(seq_of(string)), nbytes=opt(key_map(integer)))
_w("call_stack", keys=_keys_or_none)
_w("versions", packages=opt(seq_of(string)))
_w("story", keys=opt(seq_of(_key)))
_w("dump_state", exclude=opt(seq_of(string)))
_w("echo", data=anything)
_w("benchmark_disk")
_w("benchmark_memory")
_w("benchmark_network", address=string)
_w("get_logs", n=_opt_int)

# ---------------------------------------------------------------------------- served by nannies


def _n(op: str, **checks: Any) -> None:
    _op(op, _ANY_ROLE, _table=NANNY_REQUESTS, **checks)


_n("restart", reason=string, timeout=number)
_n("terminate", reason=string)
_n("get_logs", n=_opt_int)
_n("plugin_add", plugin=anything, name=string)
_n("plugin_remove", name=string)
