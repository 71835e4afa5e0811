"""How dask.array rechunks reach the shuffle service: the graph rewrite, and the three
kinds of task a rechunk becomes.

dask chooses the rechunk method when the graph is built (``rechunk(x, chunks)`` ->
`_choose_rechunk_method`): ``array.rechunk.method`` if set, else ``"p2p"`` when a
*distributed* client is the default and the rechunk is all-to-all, else ``"tasks"``;
the ``"p2p"`` path imports `distributed.shuffle`. On a shoal client (distributed not
imported, or no distributed client) dask therefore builds its task rechunk: one
``rechunk-merge-<token>`` layer per step of its plan, each annotated with its array's
chunks, dtype and chunk type (`Array.__new__`'s ``collection_annotations``).

Just before the graph is materialized (`shoal.client.graphs`), `rewrite` walks the
expression dask hands the scheduler (`HLGExpr` nodes holding a `HighLevelGraph`) and
replaces each *chain* of task-rechunk layers (a step whose only user is the next step)
that needs all-to-all movement by one `RechunkLayer` from the chain's input to its last
step's chunks: same output layer name and keys, so nothing else changes. "All-to-all"
is dask's own test for choosing p2p (graph size of the single-step rechunk, summed per
axis over `old_to_new`, against ``array.rechunk.threshold`` times the blocks in and
out). The layer holds O(input + output) tasks:

- ``("rechunk-transfer-<token>", i)`` per input block (flat C-order index): cut it once
  into the pieces of the output blocks it overlaps, send each to its owner;
- ``"rechunk-barrier-<token>"``: every piece is stored;
- ``(<name>, *j)`` per wanted output block: one copy of each piece into its place.

The tasks refuse low-level fusion (`block_fusion`): an output task must keep its key
(the scheduler pins it to its owner by key). Left to dask's task rechunk: arrays of
unknown chunks, object dtypes, chunk types other than numpy's, and chains whose
intermediate steps something else uses. ``array.rechunk.method`` set (``"tasks"``)
when computing keeps the task rechunk (see docs/design.md on why an explicit
``method="tasks"`` argument cannot be told apart). distributed's own p2p layer (code
that names ``method="p2p"``, with distributed installed) becomes the service's too.
"""

from __future__ import annotations

import math
from typing import Any

from dask._task_spec import Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from shoal.shuffle.array import ArrayRechunk
from shoal.shuffle.book import ShuffleSpec

__all__ = ["RechunkLayer", "rewrite", "rewrite_graph", "all_to_all"]

MERGE_PREFIX = "rechunk-merge-"


class ServiceTask(Task):
    """A task of the service: never fused with its neighbours (its key is how the
    scheduler knows and pins it)."""

    __slots__ = ()

    @property
    def block_fusion(self) -> bool:
        return True


class RechunkLayer(MaterializedLayer):
    """The service's tasks of one rechunk, output keys ``(name, *index)``."""

    def __init__(self, name: str, token: str, input_name: str, old: tuple, new: tuple, dtype: Any,
                 wanted: Any = None, annotations: Any = None, collection_annotations: Any = None):  # fmt: skip
        self.name = name
        self.token = token
        self.input_name = input_name
        self.old = old
        self.new = new
        self.dtype = dtype
        self.wanted = wanted
        super().__init__(self._tasks(), annotations=annotations, collection_annotations=collection_annotations)

    def _tasks(self) -> dict:
        import numpy as np

        shape_in = tuple(len(a) for a in self.old)
        shape_out = tuple(len(a) for a in self.new)
        nout = math.prod(shape_out)
        parts = tuple(range(nout)) if self.wanted is None else tuple(sorted(self.wanted))
        transfer = f"rechunk-transfer-{self.token}"
        barrier_key = f"rechunk-barrier-{self.token}"
        nin = math.prod(shape_in)
        output_keys = tuple((self.name, *(int(j) for j in np.unravel_index(p, shape_out))) for p in parts)
        spec = ShuffleSpec(
            id=f"rechunk-{self.token}",
            parts=parts,
            output_keys=output_keys,
            transfer_keys=tuple((transfer, i) for i in range(nin)),
            barrier_key=barrier_key,
        )
        wanted = None if self.wanted is None else frozenset(parts)
        rechunk = ArrayRechunk(spec, self.old, self.new, self.dtype, wanted)
        from shoal.shuffle import tasks

        dsk: dict = {}
        refs = []
        for i, index in enumerate(np.ndindex(*shape_in)):
            t = ServiceTask((transfer, i), tasks.shuffle_transfer, TaskRef((self.input_name, *index)), rechunk, i)
            dsk[t.key] = t
            refs.append(t.ref())
        barrier = ServiceTask(barrier_key, tasks.shuffle_barrier, spec, *refs)
        dsk[barrier_key] = barrier
        for p, key in zip(parts, output_keys):
            dsk[key] = ServiceTask(key, tasks.shuffle_unpack, rechunk, p, barrier.ref())
        return dsk

    def get_output_keys(self) -> set:
        import numpy as np

        shape_out = tuple(len(a) for a in self.new)
        return {(self.name, *idx) for idx in np.ndindex(*shape_out)} if self.wanted is None else {
            k for k in self.mapping if isinstance(k, tuple) and k[0] == self.name
        }

    def cull(self, keys: Any, all_hlg_keys: Any) -> tuple[Any, dict]:
        """Only the wanted output blocks (their pieces are all that is sent)."""
        import numpy as np

        shape_out = tuple(len(a) for a in self.new)
        wanted = {
            int(np.ravel_multi_index(k[1:], shape_out))
            for k in keys
            if isinstance(k, tuple) and k and k[0] == self.name and k in self.mapping
        }
        layer = self
        if wanted and len(wanted) < len([k for k in self.mapping if isinstance(k, tuple) and k[0] == self.name]):
            layer = RechunkLayer(self.name, self.token, self.input_name, self.old, self.new, self.dtype, wanted,
                                 self.annotations, self.collection_annotations)  # fmt: skip
        elif not wanted:
            return MaterializedLayer({}), {}
        return layer, {k: set(v.dependencies) for k, v in layer.mapping.items()}


def all_to_all(old: tuple, new: tuple, threshold: Any = None) -> bool:
    """dask's test for "p2p" in `_choose_rechunk_method`: would the single-step task
    rechunk from `old` to `new` be a big graph?"""
    import dask
    from dask.array.rechunk import old_to_new

    threshold = threshold or dask.config.get("array.rechunk.threshold")
    graph_size = math.prod(sum(len(ins) for ins in axis) for axis in old_to_new(old, new))
    nblocks = math.prod(len(a) for a in old) + math.prod(len(a) for a in new)
    return graph_size >= threshold * nblocks


def _array_info(layer: Any) -> dict | None:
    ann = getattr(layer, "collection_annotations", None) or {}
    chunks = ann.get("chunks")
    if chunks is None or ann.get("type") != "dask.array.core.Array":
        return None
    if any(isinstance(c, float) and math.isnan(c) for axis in chunks for c in axis):
        return None
    return ann


def _rechunkable(ann: dict) -> bool:
    import numpy as np

    dtype = ann.get("dtype")
    return (
        ann.get("chunk_type") == "numpy.ndarray"
        and isinstance(dtype, np.dtype)
        and not dtype.hasobject
        and dtype.itemsize > 0
        and len(ann["chunks"]) > 0
    )


def _is_merge(name: Any) -> bool:
    """A layer of dask's task rechunk (layer names are usually strings; a graph built from
    `delayed(..., dask_key_name=(...))` has tuple ones)."""
    return type(name) is str and name.startswith(MERGE_PREFIX)


def _is_p2p(layer: Any) -> bool:
    """distributed's rechunk layer (an explicit ``method="p2p"``, code written for
    distributed; dask needs distributed installed to build it)."""
    cls = type(layer)
    return cls.__name__ == "P2PRechunkLayer" and cls.__module__.startswith("distributed.")


def _from_p2p(layer: Any) -> Any:
    """The service's layer doing what distributed's `P2PRechunkLayer` does (same name,
    same keys), or None when its array is not one the service takes."""
    import numpy as np

    ann = _array_info(layer)
    if ann is None or not _rechunkable(ann):
        return None
    keep = np.asarray(layer.keepmap)
    wanted = None if keep.all() else frozenset(int(i) for i in np.flatnonzero(keep.ravel()))
    return RechunkLayer(layer.name, layer.token, layer.name_input, tuple(layer.chunks_input), tuple(layer.chunks),
                        ann["dtype"], wanted, layer.annotations, layer.collection_annotations)  # fmt: skip


def rewrite_graph(hlg: Any, output_keys: Any = (), tasks: bool = True) -> Any:
    """`hlg` with each all-to-all chain of task-rechunk layers (and each distributed
    p2p rechunk layer) replaced by one `RechunkLayer`; `hlg` itself when there is none."""
    layers = hlg.layers
    p2p = {name: new for name, layer in layers.items() if _is_p2p(layer) and (new := _from_p2p(layer)) is not None}
    if p2p:
        hlg = HighLevelGraph({**layers, **p2p}, dict(hlg.dependencies))
        layers = hlg.layers
    if not tasks or not any(_is_merge(name) for name in layers):
        return hlg
    deps = hlg.dependencies
    dependents: dict[str, set] = {name: set() for name in layers}
    for name, ds in deps.items():
        for d in ds:
            dependents.setdefault(d, set()).add(name)
    wanted_layers = {k[0] if isinstance(k, tuple) else k for k in _flat(output_keys)}

    def below(name: str) -> str | None:
        """The step before rechunk layer `name`, if only `name` uses it."""
        (d,) = deps[name]
        if _is_merge(d) and dependents.get(d) == {name} and d not in wanted_layers and \
                _array_info(layers[d]) is not None:  # fmt: skip
            return d
        return None

    steps = [n for n in layers if _is_merge(n) and len(deps.get(n, ())) == 1 and _array_info(layers[n])]
    inner = {b for b in map(below, steps) if b is not None}
    new_layers = dict(layers)
    new_deps = dict(deps)
    changed = False
    for top in steps:
        if top in inner:
            continue
        chain = [top]
        while (b := below(chain[-1])) is not None:
            chain.append(b)
        (source,) = deps[chain[-1]]
        src_ann = _array_info(layers.get(source))
        top_ann = _array_info(layers[top])
        if src_ann is None or top_ann is None or not _rechunkable(top_ann) or not _rechunkable(src_ann):
            continue
        old, new = tuple(src_ann["chunks"]), tuple(top_ann["chunks"])
        if len(old) != len(new) or not all_to_all(old, new):
            continue
        token = top[len(MERGE_PREFIX):]
        for name in chain:
            new_layers.pop(name, None)
            new_deps.pop(name, None)
        new_layers[top] = RechunkLayer(top, token, source, old, new, top_ann["dtype"],
                                       annotations=layers[top].annotations,
                                       collection_annotations=layers[top].collection_annotations)  # fmt: skip
        new_deps[top] = {source}
        changed = True
    if not changed:
        return hlg
    return HighLevelGraph(new_layers, new_deps)


def _flat(keys: Any) -> list:
    out: list = []
    stack = [keys]
    while stack:
        k = stack.pop()
        if isinstance(k, list):
            stack.extend(k)
        elif k is not None:
            out.append(k)
    return out


def _method_unset() -> bool:
    """No rechunk method asked for at compute time (``array.rechunk.method``)? Else task
    rechunks stay dask's (p2p ones are the service's either way)."""
    import dask

    return not dask.config.get("array.rechunk.method", None)


def rewrite(expr: Any) -> Any:
    """`expr` (what dask hands the scheduler's ``get``) with its all-to-all rechunks
    through the service; `expr` itself when it has none."""
    from dask._expr import HLGExpr

    if not hasattr(expr, "walk"):
        return expr
    tasks = _method_unset()

    def graph_of(e: Any) -> Any:
        """The HighLevelGraph an `HLGExpr` node holds (a finalizing node holds another node)."""
        if isinstance(e, HLGExpr):
            g = e.operand("dsk")
            if isinstance(g, HighLevelGraph):
                return g
        return None

    if not any((g := graph_of(e)) is not None and any((tasks and _is_merge(n)) or _is_p2p(v)
                                                       for n, v in g.layers.items())
               for e in expr.walk()):  # fmt: skip
        return expr
    from shoal.shuffle.exprs import rebuild

    def swap(e: Any, operands: list) -> Any:
        g = graph_of(e)
        if g is None:
            return None
        hlg = rewrite_graph(g, e.operand("output_keys"), tasks)
        if hlg is g:
            return None
        operands[0] = hlg
        return operands

    return rebuild(expr, swap)
