"""Hypothesis strategies over the wire protocol, for fuzzing the I/O shells.

Used by the suite (``tests/integration/test_fuzz_protocol.py``, bounded) and by
``benchmarks/fuzz.py`` (long runs against real processes). Needs `hypothesis` (the
``test`` extra); nothing in shoal imports this module.

`wires()` draws one wire tuple ``(op, *fields)`` of any op in `messages.OPS`: each field
is usually plausible for its name (a key from a small pool shared with the tasks the
tests hold, a small run id, an address, ...) and sometimes any value at all (NaN,
huge ints, nested tuples, `Pickled`, ...); now and then a field is dropped or added.
Requests name operations of `requests.REQUESTS` (or `WORKER_REQUESTS`) with arguments
drawn the same way. `packets()` draws ``(role, [wire, ...])``: what one connection
sends, starting with a registration as a client or worker (or none).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from shoal.protocol import messages as m
from shoal.protocol.requests import NANNY_REQUESTS, REQUESTS, WORKER_REQUESTS
from shoal.protocol.serialize import dumps

__all__ = ["values", "task_keys", "wires", "packets", "UNSAFE_REQUESTS"]

PICKLED = dumps(1)
#: operations a fuzzer must not call: they stop or restart the cluster, write files,
#: or run for seconds by design
UNSAFE_REQUESTS = frozenset({
    "terminate", "restart", "restart_workers", "retire_workers", "benchmark_hardware", "dump_cluster_state",
    "broadcast", "benchmark_disk", "benchmark_memory", "benchmark_network", "memory_sampler_start",
})  # fmt: skip

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12), st.binary(max_size=12),
    st.just(PICKLED),
)  # fmt: skip


_VALUES = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4).map(tuple)
    | st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), inner, max_size=3),
    max_leaves=10,
)


def values() -> st.SearchStrategy:
    """Any value msgpack (or an in-process peer) could carry."""
    return _VALUES


_KNOWN = ["x", "y", "z", ("fuzz-held", 1), ("fuzz-held", 2), ("fuzz-held", 3), 1, 2.5]


def task_keys() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(_KNOWN), st.sampled_from(_KNOWN), st.text(max_size=6), st.integers(-5, 5), st.floats(),
        st.tuples(st.text(max_size=4), st.integers(0, 3)), st.none(),
    )  # fmt: skip


def _tup(s: st.SearchStrategy, n: int = 4) -> st.SearchStrategy:
    return st.lists(s, max_size=n).map(tuple)


_K = task_keys()
_KS = _tup(_K)
_ADDR = st.sampled_from(["tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "inproc://nowhere"]) | st.text(max_size=10)
_RID = st.integers(-1, 40)
_TXT = st.text(max_size=16)
_OPT_TXT = st.none() | _TXT
_FLOAT = st.floats(-1e3, 1e12) | st.floats()
_GRAPH_TASK = st.tuples(_K, st.integers(-2, 2), st.just(PICKLED) | values(), _KS, _tup(st.integers(-3, 3), 3),
                        st.none() | st.dictionaries(st.sampled_from(["workers", "retries", "resources", "x"]), values(), max_size=2))  # fmt: skip

_FIELDS: dict[str, st.SearchStrategy] = {
    "key": _K, "dep": _K, "keys": _KS, "wanted": _KS, "run_id": _RID, "run_ids": _tup(_RID),
    "nbytes": st.integers(-5, 10**9), "type_name": _OPT_TXT, "start": _FLOAT, "stop": _FLOAT,
    "inline": st.none() | st.just(PICKLED), "exception": st.just(PICKLED), "traceback": st.none() | values(),
    "text": _TXT, "holders": _tup(_ADDR), "released": st.booleans(),
    "status": st.sampled_from(["paused", "running", "closing"]), "tasks": _tup(_GRAPH_TASK, 3),
    "funcs": _tup(st.just(PICKLED), 2), "client_id": st.sampled_from(["fire-and-forget", "someone"]) | _TXT,
    "versions": st.just({}), "force": st.booleans(), "reason": _OPT_TXT, "msg": _OPT_TXT,
    "who_has": st.dictionaries(_K, _tup(_ADDR, 2), max_size=3), "types": st.dictionaries(_K, _OPT_TXT, max_size=3),
    "address": _ADDR, "name": _TXT | st.integers(), "nthreads": st.integers(-1, 4) | st.just("x"),
    "memory_limit": st.none() | st.integers(-1, 2**40), "resources": st.dictionaries(_TXT, st.integers(-1, 4), max_size=2),
    "pid": st.integers(0, 2**31), "local_directory": _TXT, "nanny": st.none() | _ADDR, "id": st.integers(-1, 10**6),
    "ok": st.booleans(), "value": values(), "args": st.none() | st.just(PICKLED), "attribute": st.booleans(),
    "func": st.none() | st.just(PICKLED), "spec": st.just(PICKLED), "priority": st.integers(-(2**65), 2**65),
    "actor": st.booleans(), "workers": _tup(_ADDR), "topic": _TXT, "time": _FLOAT,
}  # fmt: skip
_OVERRIDES: dict[tuple[str, str], st.SearchStrategy] = {
    ("add-keys", "nbytes"): st.dictionaries(_K, st.integers(-5, 10**6), max_size=3),
    ("update-data", "nbytes"): st.dictionaries(_K, st.integers(-5, 10**6), max_size=3),
    ("compute-task", "send_inline"): st.booleans(),
    ("compute-task", "who_has"): st.dictionaries(_K, _tup(_ADDR, 2), max_size=2),
    ("compute-task", "nbytes"): st.dictionaries(_K, st.integers(0, 100), max_size=2),
    ("compute-task", "resources"): st.none() | st.dictionaries(_TXT, st.integers(0, 2), max_size=1),
}

# request arguments, by name (what is not here is drawn from `values()`)
_ARGS: dict[str, st.SearchStrategy] = {
    **{k: v for k, v in _FIELDS.items() if k in ("key", "keys", "workers", "timeout", "start", "stop", "name")},
    "timeout": st.none() | st.floats(0, 0.05), "wait": st.floats(0, 0.05) | st.booleans(), "n": st.none() | st.integers(-1, 5),
    "watch_id": st.integers(-1, 5), "lease_id": _TXT, "request_id": _TXT, "max_leases": st.integers(-1, 3),
    "maxsize": st.integers(-1, 3), "count": st.none() | st.integers(-1, 5), "since": st.none() | st.integers(0, 3),
    "names": _KS, "topics": _TXT | _tup(_TXT, 2), "metrics": st.none() | st.dictionaries(_TXT, st.integers(), max_size=2),
    "data": st.dictionaries(_K, st.just(PICKLED), max_size=2) | values(), "function": st.just(PICKLED),
    "args": st.just(PICKLED), "plugin": st.just(PICKLED), "who_has": st.dictionaries(_K, _tup(_ADDR, 1), max_size=2),
}  # fmt: skip


def _mutable(s: st.SearchStrategy) -> st.SearchStrategy:
    """Usually `s`, sometimes (one in eight) anything."""
    return st.one_of(s, s, s, s, s, s, s, values())


def _field(op: str, name: str) -> st.SearchStrategy:
    if (op, name) in _OVERRIDES:
        return _OVERRIDES[(op, name)]
    return _FIELDS[name] if name in _FIELDS else values()


def _mutate(fields: tuple, i: int, junk: Any, arity: int) -> tuple:
    """`fields` with field `i` (if it is one) replaced by `junk`, one field dropped
    (`arity` 1) or one added (`arity` 2)."""
    if 0 <= i < len(fields):
        fields = (*fields[:i], junk, *fields[i + 1 :])
    if arity == 1:
        return fields[:-1]
    if arity == 2:
        return (*fields, None)
    return fields


def _fields(op: str) -> st.SearchStrategy:
    """One `op` message: plausible fields, about a third of the time one of them (or
    the arity) wrong."""
    cls = m.OPS[op]
    n = len(cls._fields)
    parts = st.tuples(*(_field(op, f) for f in cls._fields))
    return st.tuples(parts, st.integers(-2 * n, n - 1), st.just(None) | values(), st.integers(0, 12)).map(
        lambda t: (op, *_mutate(t[0], t[1], t[2], t[3] if t[3] < 3 else 0))
    )


def _call(table: dict, name: str) -> st.SearchStrategy:
    fields = list(table[name].checks) if name in table else []
    optional = {f: _mutable(_ARGS[f] if f in _ARGS else values()) for f in fields}
    kwargs = st.fixed_dictionaries({}, optional=optional) | st.dictionaries(_TXT, values(), max_size=2)
    return st.tuples(st.integers(1, 10**6), st.just(name), kwargs).map(lambda t: ("request", *t))


_REQUEST_CACHE: dict[int, st.SearchStrategy] = {}


def _request(table: dict) -> st.SearchStrategy:
    """A request of an operation of `table` (or of a made-up name)."""
    hit = _REQUEST_CACHE.get(id(table))
    if hit is None:
        calls = {n: _call(table, n) for n in sorted(n for n in table if n not in UNSAFE_REQUESTS)}
        made_up = _TXT.flatmap(lambda name: _call(table, name))
        hit = _REQUEST_CACHE[id(table)] = st.sampled_from(sorted(calls)).flatmap(calls.__getitem__) | made_up
    return hit


_OPS = sorted(op for op in m.OPS if op not in ("request", "reply"))


_BY_OP = {op: _fields(op) for op in m.OPS if op not in ("request", "reply")}


def wires(ops: list[str] | None = None, table: dict = REQUESTS) -> st.SearchStrategy:
    """One wire tuple: any op of `ops` (default: all), or a request into `table`; now
    and then not a message at all."""
    pool = sorted(ops or _OPS)
    return st.one_of(st.sampled_from(pool).flatmap(_BY_OP.__getitem__), _request(table), values())


_CLIENT_OPS = [op for op in _OPS if m.OPS[op].sender == m.CLIENT]
_WORKER_OPS = [op for op in _OPS if m.OPS[op].sender == m.WORKER]


def _register(role: Any) -> st.SearchStrategy:
    if role == "client":
        return st.uuids().map(lambda u: [m.RegisterClient(f"fuzz-{u}", {}).to_wire()])
    if role == "worker":
        return st.integers(1, 60000).map(
            lambda port: [m.RegisterWorker(f"tcp://127.0.0.1:{port}", f"fuzz-{port}", 1, 2**30, {}, 1, "/tmp", {}, None).to_wire()]
        )  # fmt: skip
    return st.just([])


def packets(worker_side: bool = False) -> st.SearchStrategy:
    """``(role, [wire, ...])``: what one connection sends. Against the scheduler the
    connection registers as a client or worker (or not) and then mostly sends that
    role's messages; against a worker it sends peer messages and worker calls."""
    if worker_side:
        msgs = st.lists(
            st.one_of(wires(["actor-call", "actor-result"], WORKER_REQUESTS), _request(WORKER_REQUESTS),
                      _request(NANNY_REQUESTS), wires()),
            min_size=1, max_size=4,
        )  # fmt: skip
        return msgs.map(lambda ws: (None, ws))

    def for_role(role: Any) -> st.SearchStrategy:
        own = {"client": _CLIENT_OPS, "worker": _WORKER_OPS}.get(role, _OPS)
        body = st.lists(st.one_of(wires(own), wires(own), wires()), min_size=1, max_size=4)
        return st.tuples(st.just(role), st.tuples(_register(role), body).map(lambda rb: rb[0] + rb[1]))

    return st.sampled_from([None, "client", "client", "worker", "worker"]).flatmap(for_role)
