"""How dask's dataframe shuffles reach the shuffle service: the default method, the
expression rewrite, and the three kinds of task a shuffle becomes.

The way in (docs/design.md, "Shuffles", lists the dask internals this relies on; the
canary test `tests/unit/test_shuffle_dask_internals.py` fails loudly when a dask
release changes them):

1. A shoal `Client` sets ``dataframe.shuffle.method`` to `SERVICE`, a string that
   reads ``"simple"`` and also compares equal to ``"tasks"``. dask lowers every shuffle
   whose method was not given (``df.shuffle``, ``set_index``, ``sort_values``, hash
   ``merge``/``join``, ``drop_duplicates``/``groupby`` with ``split_out>1``) to its
   single-stage `SimpleShuffle` node, and still makes the choices it makes for
   ``"tasks"`` (broadcast joins, order-preserving methods). An explicit
   ``shuffle_method="tasks"`` (or ``"disk"``) gives dask's own shuffle, untouched.
2. Before the graph is built (`shoal.client.graphs`), `rewrite` replaces each
   `SimpleShuffle` node of the lowered expression with a `ServiceShuffle` of the same
   operands and the same name, so no other node or key changes.
3. `ServiceShuffle._layer` makes O(input + output) tasks: one *transfer* per input
   partition (split once, pieces streamed to their owners), one *barrier*, one
   *unpack* per output partition (assembled once, on its owner).
"""

from __future__ import annotations

import functools
from typing import Any

from dask.dataframe.dask_expr._shuffle import SimpleShuffle

from shoal.shuffle.book import ShuffleSpec
from shoal.shuffle.method import SERVICE, ServiceMethod  # noqa: F401 (re-exported)

__all__ = ["SERVICE", "ServiceMethod", "ServiceShuffle", "rewrite", "DataFrameShuffle"]




class DataFrameShuffle:
    """What a worker needs to split and assemble one dataframe shuffle (travels inside
    its tasks)."""

    __slots__ = ("spec", "column", "npartitions", "ignore_index", "meta", "wanted")

    def __init__(self, spec: ShuffleSpec, column: Any, npartitions: int, ignore_index: bool, meta: Any, filtered: bool):
        self.spec = spec
        self.column = column
        self.npartitions = npartitions
        self.ignore_index = ignore_index
        self.meta = meta
        #: the output partitions wanted, when not all are
        self.wanted = frozenset(spec.parts) if filtered else None

    def __reduce__(self) -> Any:
        args = (self.spec, self.column, self.npartitions, self.ignore_index, self.meta, self.wanted is not None)
        return (_rebuild, args)

    @property
    def id(self) -> str:
        return self.spec.id


def _rebuild(*args: Any) -> DataFrameShuffle:
    return DataFrameShuffle(*args)


class ServiceShuffle(SimpleShuffle):
    """dask's `SimpleShuffle` node with the service's tasks; same name, same output."""

    @functools.cached_property
    def _funcname(self) -> str:
        return "simpleshuffle"

    def _layer(self) -> dict:
        from dask._task_spec import Task, TaskRef

        from shoal.shuffle import tasks

        token = self.deterministic_token
        parts = tuple(self._partitions) if self._filtered else tuple(range(self.npartitions_out))
        transfer_name = f"shuffle-transfer-{token}"
        barrier_key = f"shuffle-barrier-{token}"
        nin = self.frame.npartitions
        spec = ShuffleSpec(
            id=token,
            parts=parts,
            output_keys=tuple((self._name, i) for i in range(len(parts))),
            transfer_keys=tuple((transfer_name, i) for i in range(nin)),
            barrier_key=barrier_key,
        )
        shuffle = DataFrameShuffle(
            spec, self.partitioning_index, self.npartitions_out, self.ignore_index, self.frame._meta, self._filtered
        )
        dsk: dict = {}
        refs = []
        for i in range(nin):
            t = Task((transfer_name, i), tasks.shuffle_transfer, TaskRef((self.frame._name, i)), shuffle, i)
            dsk[t.key] = t
            refs.append(t.ref())
        barrier = Task(barrier_key, tasks.shuffle_barrier, spec, *refs)
        dsk[barrier_key] = barrier
        for i, part in enumerate(parts):
            t = Task((self._name, i), tasks.shuffle_unpack, shuffle, part, barrier.ref())
            dsk[t.key] = t
        return dsk


def _replace(op: Any, memo: dict) -> Any:
    from dask._expr import Expr

    if isinstance(op, Expr):
        return _rewrite(op, memo)
    if type(op) in (list, tuple):
        new = [_replace(o, memo) for o in op]
        if any(a is not b for a, b in zip(new, op)):
            return type(op)(new)
    return op


def _fresh(cls: type, operands: list, token: str) -> Any:
    """A new `cls` node of these operands and this token. Not `cls(...)`: dask keeps one
    node per name (`SingletonExpr`), so that would hand back the old node of the name."""
    from dask._expr import Expr

    return Expr.__new__(cls, *operands, _determ_token=token)


def _rewrite(expr: Any, memo: dict) -> Any:
    name = expr._name
    done = memo.get(name)
    if done is not None:
        return done
    operands = [_replace(op, memo) for op in expr.operands]
    changed = any(a is not b for a, b in zip(operands, expr.operands))
    if type(expr) is SimpleShuffle:
        out = _fresh(ServiceShuffle, operands, expr.deterministic_token)
    elif changed:
        out = _fresh(type(expr), operands, expr.deterministic_token)
        for k, v in expr.__dict__.items():  # cached properties that do not depend on the change
            if k in ("_name", "_funcname", "_meta", "_divisions", "npartitions") and k not in out.__dict__:
                out.__dict__[k] = v
    else:
        out = expr
    memo[name] = out
    return out


def rewrite(expr: Any) -> Any:
    """`expr` (a lowered, optimized dask expression) with each `SimpleShuffle` node
    replaced by a `ServiceShuffle`; `expr` itself when it has none. Names are kept."""
    if not any(type(e) is SimpleShuffle for e in expr.walk()):
        return expr
    return _rewrite(expr, {})
