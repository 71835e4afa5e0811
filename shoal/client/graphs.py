"""Turning dask graphs and collections into tasks for the scheduler (`get`, `compute`,
`persist`). Each graph node is pickled on its own into an opaque spec the scheduler
forwards untouched; dask's `order` gives the per-task priority so reductions finish
before new branches start."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from shoal import config
from shoal._gc import paused
from shoal.client.futures import Future
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps

_ANNOTATIONS = ("workers", "allow_other_workers", "resources", "retries", "priority")
#: keyword arguments of compute / persist that become task options
_OPTIONS = ("workers", "allow_other_workers", "resources", "retries", "priority", "actors")


_threshold_memo: tuple[Any, int] = (None, 0)


def warn_if_large(nbytes: int, stacklevel: int = 2) -> None:
    """A `UserWarning` (at the user's call) when a submission carries more pickled bytes
    than `shoal.admin.large-graph-warning-threshold`, as distributed warns."""
    global _threshold_memo
    raw = config.get("admin.large-graph-warning-threshold")
    if raw != _threshold_memo[0]:
        from dask.utils import parse_bytes

        _threshold_memo = (raw, parse_bytes(raw) if isinstance(raw, str) else int(raw or 0))
    limit = _threshold_memo[1]
    if limit and nbytes > limit:
        import warnings

        from dask.utils import format_bytes

        warnings.warn(
            f"Sending large graph of size {format_bytes(nbytes)}.\n"
            "This may cause some slowdown.\n"
            "Consider scattering large objects ahead of time with client.scatter, loading "
            "the data with Dask directly, or using futures or delayed objects to embed the "
            "data into the graph without repetition.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def _send_in_batches(client: Any, tasks: list, funcs: list, wanted: tuple) -> None:
    """Send the graph as several `update-graph` messages of at most
    `shoal.client.graph-batch-size` tasks, so the scheduler stays responsive while a
    huge graph arrives. `tasks` is in dependency order, so every batch only refers to
    tasks sent before; they wait as `released` until the last batch names the wanted
    keys. Each batch carries just the functions its tasks use."""
    size = max(1, int(config.get("client.graph-batch-size")))
    if len(tasks) <= size:
        client.outbox.send(m.UpdateGraph(tuple(tasks), tuple(funcs), wanted))
        return
    for start in range(0, len(tasks), size):
        batch = tasks[start : start + size]
        local: dict[int, int] = {}
        batch_funcs: list = []
        out = []
        for key, fi, spec, deps, prio, ann in batch:
            if fi >= 0:
                li = local.get(fi)
                if li is None:
                    li = local[fi] = len(batch_funcs)
                    batch_funcs.append(funcs[fi])
                fi = li
            out.append((key, fi, spec, deps, prio, ann))
        last = start + size >= len(tasks)
        client.outbox.send(m.UpdateGraph(tuple(out), tuple(batch_funcs), wanted if last else ()))


def _flatten(keys: Any) -> list:
    from dask.core import flatten

    if isinstance(keys, list):
        return list(flatten(keys))
    return [keys]


def _pack(keys: Any, futures: dict) -> Any:
    if isinstance(keys, list):
        return [_pack(k, futures) for k in keys]
    return futures[keys]


class _Either:
    """Membership in either of two containers (without copying the client's futures)."""

    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any):
        self.a, self.b = a, b

    def __contains__(self, k: Any) -> bool:
        return k in self.a or k in self.b


def _cull(nodes: dict, keys: list, held: Any, external: list) -> dict:
    """The nodes `keys` need, in dependency order. A dependency that is neither in the
    graph nor `held` (a future of this client) goes to `external`: a future of another
    client or graph (a persisted collection's, one unpickled in a task) that this client
    will ask the scheduler for. A cycle is a `RuntimeError` naming its keys (as dask's
    local scheduler does)."""
    needed: dict = {}
    seen_external: set = set()
    on_path: dict = {}  # keys on the current DFS path -> position
    path: list = []
    for root in keys:
        if root not in nodes or root in needed:
            continue
        stack = [(root, iter(nodes[root].dependencies))]
        on_path[root] = 0
        path.append(root)
        while stack:
            key, deps = stack[-1]
            for d in deps:
                if d in needed:
                    continue
                if d in on_path:
                    cycle = path[on_path[d]:] + [d]
                    raise RuntimeError(
                        "Cycle detected between the following keys:\n" + "\n".join(f"  -> {c}" for c in cycle)
                    )
                if d not in nodes:
                    if d not in held and d not in seen_external:
                        seen_external.add(d)
                        external.append(d)
                    continue
                on_path[d] = len(path)
                path.append(d)
                stack.append((d, iter(nodes[d].dependencies)))
                break
            else:
                stack.pop()
                path.pop()
                del on_path[key]
                needed[key] = nodes[key]
    return needed


def insert_futures(client: Any, graph: Any, keys: Any) -> Any:
    """`graph` with each key this client holds a future of replaced by that future and
    culled to what `keys` still need; `graph` itself when no key is held."""
    from dask._task_spec import convert_legacy_graph

    held = [k for k in graph if k in client.futures]
    if not held:
        return graph
    dsk = dict(graph)
    for k in held:
        dsk[k] = Future(k, client)
    nodes = convert_legacy_graph({k: v for k, v in dsk.items() if not isinstance(v, Future)})
    needed: dict = {}
    stack = list(_flatten(keys))
    while stack:
        k = stack.pop()
        if k in needed or k not in dsk:
            continue
        needed[k] = dsk[k]
        if k in nodes:
            stack.extend(nodes[k].dependencies)
    return needed


def graph_to_futures(client: Any, dsk: Any, keys: Any, **options: Any) -> Any:
    """Submit graph `dsk` (any form dask hands a scheduler) and return futures for `keys`
    (in the same nesting).

    The cyclic collector is paused meanwhile: building a graph makes tens of thousands
    of containers, some of them garbage in reference cycles (`dask.order`'s recursive
    closures hold its per-task dependency sets). With the collector running they
    outlive its young collections and pile up in the oldest generation, so that each
    graph costs the process a full collection (70 ms with dask and pandas imported);
    paused, the first young collection afterwards reclaims them."""
    with paused():
        return _graph_to_futures(client, dsk, keys, **options)


def _graph_to_futures(
    client: Any, dsk: Any, keys: Any, *, workers: Any = None, allow_other_workers: Any = None,
    resources: Any = None, retries: Any = None, priority: int = 0, actors: Any = None,
) -> Any:  # fmt: skip
    from dask._task_spec import Alias, Task, convert_legacy_graph
    from dask.core import validate_key
    from dask.highlevelgraph import HighLevelGraph
    from dask.order import order

    layer_ann: dict = {}
    if isinstance(dsk, HighLevelGraph):
        graph = dict(dsk)
    elif isinstance(dsk, dict):
        graph = dsk
    else:  # a dask expression
        if "dask.dataframe" in sys.modules:  # else it holds no dataframe shuffle
            from shoal.shuffle.dataframe import rewrite

            dsk = rewrite(dsk)
        if "dask.array" in sys.modules:  # else it holds no rechunk
            from shoal.shuffle.rechunk import rewrite as rewrite_rechunks

            dsk = rewrite_rechunks(dsk)
        graph = dsk.__dask_graph__()
        layer_ann = dsk.__dask_annotations__() or {}
    flat = _flatten(keys)
    for k in flat:
        validate_key(k)  # a key dask rejects fails here, at the call (TypeError)
    clean: dict = {}
    outside: list = []  # keys of futures in the graph that this client does not hold
    for k, v in graph.items():
        if isinstance(v, Future):
            if v.key != k:
                clean[k] = Alias(k, v.key)
            elif v.key not in client.futures:
                outside.append(v.key)
            continue  # the key of a future: the scheduler already has it
        clean[k] = v
    # each stage lets go of the one before (a million-task graph: ~70 B/task less at peak)
    del graph
    nodes = convert_legacy_graph(clean)
    del clean
    external: list = outside
    held = client.futures if not outside else _Either(client.futures, set(outside))
    needed = _cull(nodes, flat, held, external)
    del nodes
    # futures this client does not hold (another client's, a persisted collection's
    # unpickled in a task): hold them from now on, and ask the scheduler for them ahead
    # of the graph on the same ordered connection; a key it does not know fails the
    # graph's tasks as cancelled ("lost dependencies") instead of hanging
    held_external = [Future(k, client) for k in external]
    if external:
        client.outbox.send(m.DesireKeys(tuple(external), client.id))
    for k in flat:
        if k not in needed and k not in client.futures:
            raise KeyError(f"key {k!r} is not in the graph")
    try:
        ordering = order(needed) if needed else {}
    except Exception:  # graphs with external dependencies: keep insertion order
        ordering = {k: i for i, k in enumerate(needed)}
    base = next(client._priority_counter)
    global_ann = client._annotations(workers, allow_other_workers, resources, retries) or {}
    actor_keys = _actor_keys(actors, flat)
    tasks = []
    funcs: list = []
    func_index: dict[int, int] = {}
    for k in list(needed):
        if type(k) is not str:
            validate_key(k)
        node = needed.pop(k)  # freed once pickled: a big graph's nodes and specs never all coexist
        ann = dict(global_ann)
        user_priority = priority
        for name in _ANNOTATIONS:
            per_key = layer_ann.get(name)
            if per_key and k in per_key:
                value = per_key[k]
                value = value(k) if callable(value) else value
                if name == "priority":
                    user_priority = value
                elif name == "workers":
                    ann["workers"] = [value] if isinstance(value, (str, int, float)) else list(value)
                else:
                    ann[name] = value
        if actor_keys and k in actor_keys:
            ann["actor"] = True
        fi = -1
        try:
            if type(node) is Task:
                # the function is pickled once for the whole graph; each node refers to it
                fi = func_index.get(id(node.func), -1)
                if fi < 0:
                    fi = func_index[id(node.func)] = len(funcs)
                    funcs.append(client._pickle_func(node.func))
                spec = dumps(node, ref=node.func)
            else:
                spec = dumps(node)
        except Exception as e:
            raise TypeError(f"Could not serialize task {k!r}: {e}") from e
        order_k = ordering.pop(k, 0)
        tasks.append((k, fi, spec, tuple(node.dependencies), (-user_priority, base, order_k), ann or None))
    futures = {k: Future(k, client) for k in flat}
    warn_if_large(sum(t[2].nbytes for t in tasks) + sum(f.nbytes for f in funcs), stacklevel=5)
    _send_in_batches(client, tasks, funcs, tuple(flat))
    del held_external  # the graph's tasks now keep them on the scheduler
    return _pack(keys, futures)


def _actor_keys(actors: Any, keys: list) -> set:
    """Which keys become actors: `actors` is True (all requested keys), a dict of
    key -> bool, or a collection of keys."""
    if actors is None or actors is False:
        return set()
    if actors is True:
        return set(keys)
    if isinstance(actors, dict):
        return {k for k, v in actors.items() if v}
    if isinstance(actors, (str, bytes, int, float)):
        return {actors}
    return set(actors)


def _to_expr(collections: list, optimize_graph: bool) -> Any:
    from dask.base import collections_to_expr

    return collections_to_expr(collections, optimize_graph)


def compute(client: Any, collections: Any, *, sync: bool = False, optimize_graph: bool = True, traverse: bool = True, **kwargs: Any) -> Any:
    from dask._expr import FinalizeCompute
    from dask.base import is_dask_collection
    from dask.delayed import delayed

    singleton = not isinstance(collections, (list, tuple, set))
    seq = [collections] if singleton else list(collections)
    if traverse:
        seq = [
            delayed(c) if isinstance(c, (list, tuple, set, dict)) and not is_dask_collection(c) else c for c in seq
        ]
    positions = [i for i, c in enumerate(seq) if is_dask_collection(c)]
    results: list = list(seq)
    opts = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
    for i in positions:
        expr = FinalizeCompute(_to_expr([seq[i]], optimize_graph)).optimize()
        keys = _flatten(expr.__dask_keys__())
        (fut,) = [graph_to_futures(client, expr, keys[0], **opts)]
        results[i] = fut
    if sync:
        results = client.gather(results)
        if asyncio.iscoroutine(results):  # on the client's loop: an awaitable of the values
            return _first_when_awaited(results) if singleton else results
    return results[0] if singleton else results


async def _first_when_awaited(results: Any) -> Any:
    return (await results)[0]


def persist(client: Any, collections: Any, *, optimize_graph: bool = True, **kwargs: Any) -> Any:
    """Submit the collections as one optimized graph; return them rebuilt around futures.

    Keys come from the *optimized* expression (optimization may rename them, e.g. by
    fusing blockwise steps) and each collection is rebuilt with its own post-persist
    function, as dask's local `persist` does."""
    from dask._expr import CompositeExpr, _ExprSequence
    from dask.base import _rebuild_composite_collection, is_dask_collection

    singleton = not isinstance(collections, (list, tuple, set))
    seq = [collections] if singleton else list(collections)
    if not all(is_dask_collection(c) for c in seq):
        raise TypeError("persist expects dask collections")
    opts = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
    expr = _to_expr(seq, optimize_graph)
    parts = list(expr.operands) if isinstance(expr, _ExprSequence) else [expr]
    composite = any(isinstance(e, CompositeExpr) for e in parts)
    expr = expr.optimize()
    parts = list(expr.operands) if isinstance(expr, _ExprSequence) else [expr]
    if not composite or len(parts) != len(seq):
        parts = [None] * len(seq)
    keys: list = []
    rebuilds = []
    for c, part, ckeys in zip(seq, parts, expr.__dask_keys__(), strict=True):
        c_keys = _flatten(ckeys)
        keys.extend(c_keys)
        rebuilds.append((c, part, c_keys))
    futures = dict(zip(keys, graph_to_futures(client, expr, keys, **opts)))
    out = []
    for c, part, c_keys in rebuilds:
        if isinstance(part, CompositeExpr):
            out.append(_rebuild_composite_collection(c, part, futures, cull_to_child_keys=True))
        else:
            rebuild, state = c.__dask_postpersist__()
            out.append(rebuild({k: futures[k] for k in c_keys}, *state))
    return out[0] if singleton else out
