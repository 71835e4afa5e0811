"""How dask's dataframe shuffles reach the shuffle service: the default method, the
expression rewrite, and the three kinds of task a shuffle becomes.

The way in (docs/design.md, "Shuffles", lists the dask internals this relies on; the
canary test `tests/unit/shuffle/test_shuffle_dask_internals.py` fails loudly when a dask
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

from dask.dataframe.dask_expr._shuffle import P2PShuffle, SimpleShuffle

from shoal.shuffle.book import ShuffleSpec
from shoal.shuffle.method import SERVICE, ServiceMethod  # noqa: F401 (re-exported)

__all__ = ["SERVICE", "ServiceMethod", "ServiceShuffle", "rewrite", "DataFrameShuffle"]




class DataFrameShuffle:
    """What a worker needs to split and assemble one dataframe shuffle (travels inside
    its tasks)."""

    __slots__ = ("spec", "column", "npartitions", "ignore_index", "meta", "wanted", "drop_column")

    def __init__(
        self, spec: ShuffleSpec, column: Any, npartitions: int, ignore_index: bool, meta: Any, filtered: bool,
        drop_column: bool = False,
    ):  # fmt: skip
        self.spec = spec
        self.column = column
        self.npartitions = npartitions
        self.ignore_index = ignore_index
        self.meta = meta
        #: the output partitions wanted, when not all are
        self.wanted = frozenset(spec.parts) if filtered else None
        #: outputs leave the partitioning column out (dask's p2p node's output)
        self.drop_column = drop_column

    def __reduce__(self) -> Any:
        args = (self.spec, self.column, self.npartitions, self.ignore_index, self.meta, self.wanted is not None,
                self.drop_column)  # fmt: skip
        return (_rebuild, args)

    @property
    def id(self) -> str:
        return self.spec.id

    def split(self, df: Any, inp: int, groups: Any = None) -> tuple[dict[int, Any], bool]:
        """``({output partition: non-empty piece of input partition inp}, apart)``;
        `groups`: the output partitions by receiver; `apart`: no two groups' pieces
        share memory (`split_frame`)."""
        from shoal.shuffle.split import split_frame

        return split_frame(df, self.column, self.npartitions, self.ignore_index, self.wanted, groups)

    def assemble(self, part: int, pieces: list) -> Any:
        """Output partition `part` from its (input partition, piece) pairs, in input order."""
        from shoal.shuffle.split import unpack_pieces

        out = unpack_pieces([p for _, p in pieces], self.meta, self.ignore_index, part)
        return out.drop(columns=self.column) if self.drop_column else out

    def empty(self, part: int) -> Any:
        meta = self.meta.copy()
        return meta.drop(columns=self.column) if self.drop_column else meta


def _rebuild(*args: Any) -> DataFrameShuffle:
    return DataFrameShuffle(*args)


class ServiceShuffle(SimpleShuffle):
    """dask's `SimpleShuffle` node with the service's tasks; same name, same output."""

    _drop_column = False

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
            spec, self.partitioning_index, self.npartitions_out, self.ignore_index, self.frame._meta, self._filtered,
            self._drop_column,
        )  # fmt: skip
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


class ServiceP2PShuffle(ServiceShuffle):
    """dask's `P2PShuffle` node (an explicit ``shuffle_method="p2p"``, written for
    distributed) with the service's tasks; same name, and its output leaves the
    partitioning column out as dask's p2p node's does."""

    _drop_column = True

    @functools.cached_property
    def _funcname(self) -> str:
        return "p2pshuffle"

    @functools.cached_property
    def _meta(self) -> Any:
        return self.frame._meta.drop(columns=self.partitioning_index)


def _swap(expr: Any, operands: list, unused_index: set) -> Any:
    from shoal.shuffle.exprs import fresh

    if type(expr) is SimpleShuffle or type(expr) is P2PShuffle:
        if expr._name in unused_index:
            operands = type(expr)(*operands).substitute_parameters({"ignore_index": True}).operands
        cls = ServiceShuffle if type(expr) is SimpleShuffle else ServiceP2PShuffle
        return fresh(cls, operands, expr.deterministic_token)
    return None


def _unused_index(expr: Any) -> set:
    """Names of the shuffle nodes of `expr` whose output index nobody reads: each of
    their uses is a merge on columns (pandas gives the result a new index whatever the
    sides' indexes are), directly or through column projections. Their outputs need
    not carry the index: it does not travel (a merge of two frames of three 8-byte
    columns sends a quarter fewer bytes)."""
    from dask.dataframe.dask_expr._expr import Fused, Projection
    from dask.dataframe.dask_expr._merge import BlockwiseMerge

    users: dict[str, list] = {}
    nodes = []
    fused = []
    for node in expr.walk():
        # a fused block's nodes use what the block depends on; the block's users use
        # its first node (dask's `Fused`)
        group = [node]
        if type(node) is Fused:
            fused.append(node)
            group = node.exprs
        for n in group:
            nodes.append(n)
            for dep in n.dependencies():
                users.setdefault(dep._name, []).append(n)
    for node in fused:
        users.setdefault(node.exprs[0]._name, []).extend(users.get(node._name, ()))
        if node._name == expr._name:
            expr = node.exprs[0]

    def on_columns(merge: Any, side: Any) -> bool:
        left = merge.left._name == side._name
        if merge.left_index or merge.right_index or merge.left._name == merge.right._name:
            return False
        on = merge.left_on if left else merge.right_on
        on = on if isinstance(on, list) else [on]
        columns = set(side._meta.columns)
        return all(isinstance(c, str) and c in columns for c in on) and side._meta.index.name not in on

    def unread(node: Any) -> bool:
        uses = users.get(node._name)
        if not uses or node._name == expr._name:
            return False  # the result itself: its index is the user's
        for u in uses:
            if type(u) is Projection:
                if not unread(u):
                    return False
            elif type(u) is not BlockwiseMerge or not on_columns(u, node):
                return False
        return True

    return {n._name for n in nodes if type(n) in (SimpleShuffle, P2PShuffle) and not n.ignore_index and unread(n)}


def rewrite(expr: Any) -> Any:
    """`expr` (a lowered, optimized dask expression) with each `SimpleShuffle` node
    replaced by a `ServiceShuffle` (each `P2PShuffle`, from an explicit
    ``shuffle_method="p2p"``, by a `ServiceP2PShuffle`); `expr` itself when it has
    none. Names are kept. A shuffle whose output index is never read (`_unused_index`)
    ignores it."""
    if not hasattr(expr, "walk") or not any(type(e) in (SimpleShuffle, P2PShuffle) for e in expr.walk()):
        return expr
    from shoal.shuffle.exprs import rebuild

    unused = _unused_index(expr)
    return rebuild(expr, lambda e, operands: _swap(e, operands, unused))
