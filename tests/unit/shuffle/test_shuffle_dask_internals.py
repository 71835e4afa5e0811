"""Canary: the dask internals the shuffle service relies on (docs/design.md, "Shuffles").

If one of these fails after a dask upgrade, dask changed how it lowers shuffles: read
`shoal/shuffle/dataframe.py` and adapt it; do not loosen the test.
"""

from __future__ import annotations

import inspect

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask._expr import Expr, FinalizeCompute, SingletonExpr
from dask.dataframe.dask_expr._shuffle import SimpleShuffle, TaskShuffle

from shoal.shuffle.dataframe import ServiceShuffle, rewrite
from shoal.shuffle.method import SERVICE


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame({"k": rng.integers(0, 100, 4000), "v": rng.random(4000)})
    return dd.from_pandas(pdf, npartitions=8), dd.from_pandas(pdf, npartitions=2)


def lowered(collection):
    """The optimized expression, as `persist` sees it (`compute` wraps it in
    `FinalizeCompute`, which may move a sort after the concatenation)."""
    return collection.expr.optimize()


def kinds(expr):
    return {type(e) for e in expr.walk()}


def test_the_method_string_is_read_from_config_and_compared_with_eq():
    from dask.utils import get_default_shuffle_method

    with dask.config.set({"dataframe.shuffle.method": SERVICE}):
        got = get_default_shuffle_method()
    assert got is SERVICE
    assert SERVICE == "simple" and SERVICE == "tasks" and SERVICE != "p2p" and SERVICE != "disk"
    assert "tasks" == SERVICE and SERVICE in ("disk", "tasks", "p2p")


def test_default_method_lowers_to_simple_shuffle_and_explicit_tasks_stays(frames):
    df, small = frames
    with dask.config.set({"dataframe.shuffle.method": SERVICE}):
        for c in (
            df.shuffle("k"),
            df.set_index("v"),
            df.sort_values("v"),
            df.merge(df.rename(columns={"v": "w"}), on="k"),
            df.drop_duplicates(subset="k", split_out=3),
            df.groupby("k").v.sum(split_out=3),
        ):
            ks = kinds(lowered(c))
            assert SimpleShuffle in ks and TaskShuffle not in ks, c
        ks = kinds(lowered(df.shuffle("k", shuffle_method="tasks")))
        assert TaskShuffle in ks and SimpleShuffle not in ks
        # "tasks"-like choices are kept: a merge with a tiny side is a broadcast join
        bc = lowered(df.merge(dd.from_pandas(pd.DataFrame({"k": [1], "z": [2]}), npartitions=1), on="k"))
        assert SimpleShuffle not in kinds(bc)


def test_simple_shuffle_node_shape():
    assert SimpleShuffle._parameters == [
        "frame", "partitioning_index", "npartitions_out", "ignore_index", "options",
        "original_partitioning_index", "_partitions",
    ]  # fmt: skip
    for attr in ("_filtered", "_partitions", "npartitions_out", "frame", "deterministic_token", "_layer"):
        assert hasattr(SimpleShuffle, attr) or attr in SimpleShuffle._parameters, attr
    # an explicit shuffle_method="p2p" lowers to P2PShuffle: the same operands, so the
    # service takes it too (its output leaves the partitioning column out)
    from dask.dataframe.dask_expr._shuffle import P2PShuffle

    assert issubclass(P2PShuffle, SimpleShuffle) and P2PShuffle._parameters == SimpleShuffle._parameters
    # one node per name: `Expr.__new__` builds a fresh one (how `rewrite` avoids the cache)
    assert issubclass(SimpleShuffle, SingletonExpr)
    assert "_determ_token" in inspect.signature(Expr.__new__).parameters


def test_split_and_concat_helpers():
    from dask.dataframe.core import _concat
    from dask.dataframe.shuffle import shuffle_group

    params = list(inspect.signature(shuffle_group).parameters)
    assert params == ["df", "cols", "stage", "k", "npartitions", "ignore_index", "nfinal"]
    assert list(inspect.signature(_concat).parameters) == ["args", "ignore_index"]


def test_rewrite_keeps_names_and_makes_linear_graphs(frames):
    df, _ = frames
    with dask.config.set({"dataframe.shuffle.method": SERVICE}):
        expr = FinalizeCompute(df.shuffle("k", npartitions=8).expr).optimize()
    new = rewrite(expr)
    assert new is not expr and new._name == expr._name and new.__dask_keys__() == expr.__dask_keys__()
    assert ServiceShuffle in kinds(new) and SimpleShuffle not in {type(e) for e in new.walk()}
    assert SimpleShuffle in kinds(expr)  # the original is untouched
    graph = new.__dask_graph__()
    names = {k[0] if isinstance(k, tuple) else k for k in graph}
    assert not any(n.startswith(("split-", "group-")) for n in names)
    transfers = [k for k in graph if isinstance(k, tuple) and k[0].startswith("shuffle-transfer-")]
    assert len(transfers) == 8 and sum(1 for k in graph if isinstance(k, str) and k.startswith("shuffle-barrier-")) == 1
    # without a shuffle, nothing changes
    plain = lowered(df.v.sum())
    assert rewrite(plain) is plain


def test_a_merge_on_columns_shuffles_without_the_index(frames):
    """pandas gives a merge on columns a new index: the shuffles that only feed such a
    merge (dask's `BlockwiseMerge`, through `Projection`s, maybe inside a `Fused`
    block) ignore their index; every other shuffle keeps it."""
    from dask.dataframe.dask_expr._expr import Fused, Projection
    from dask.dataframe.dask_expr._merge import BlockwiseMerge

    from shoal.shuffle.dataframe import _unused_index

    df, _ = frames
    other = df.rename(columns={"v": "w"})
    with dask.config.set({"dataframe.shuffle.method": SERVICE}):
        merged = df.merge(other, on="k")
        expr = lowered(merged.map_partitions(len))
        assert {Fused, Projection, BlockwiseMerge} <= kinds(expr) | {t for e in expr.walk() if type(e) is Fused
                                                                     for t in map(type, e.exprs)}  # fmt: skip
        assert len(_unused_index(expr)) == 2 and len(_unused_index(lowered(merged))) == 2
        new = rewrite(expr)
        shuffles = [e for e in new.walk() if type(e) is ServiceShuffle]
        assert len(shuffles) == 2 and all(e.ignore_index for e in shuffles)
        assert new.__dask_keys__() == expr.__dask_keys__()
        for kept in (
            df.shuffle("k"),  # the user sees the index
            df.merge(other.set_index("k"), left_on="k", right_index=True),  # an index is merged on
            df.set_index("v").merge(other.set_index("w"), left_on="v", right_on="w"),  # ... by its name
        ):
            assert not _unused_index(lowered(kept)), kept
    # what it rests on: pandas numbers a merge on columns anew, whatever the indexes
    left = pd.DataFrame({"k": [1, 2, 1], "a": [1, 2, 3]}, index=[7, 8, 9])
    right = pd.DataFrame({"k": [1, 2], "b": [4, 5]}, index=[3, 2])
    for how in ("inner", "left", "right", "outer"):
        out = left.merge(right, on="k", how=how)
        assert out.index.equals(pd.RangeIndex(len(out))), how


# ---------------------------------------------------------------- dask.array rechunks
# (shoal/shuffle/rechunk.py; docs/design.md, "Shuffles", "Rechunks")


def test_rechunk_method_choice_reads_config_then_falls_back_to_tasks_without_distributed_client():
    from dask.array.rechunk import _choose_rechunk_method, rechunk

    src = inspect.getsource(rechunk)
    # the choice is made when the graph is built; "p2p" imports distributed's module
    assert "_choose_rechunk_method(" in src and 'method == "tasks"' in src and "distributed.shuffle" in src
    old, new = ((100,), (1,) * 100), ((1,) * 100, (100,))
    with dask.config.set({"array.rechunk.method": "tasks"}):
        assert _choose_rechunk_method(old, new) == "tasks"
    # no distributed client is the default on shoal: dask builds its task rechunk
    assert _choose_rechunk_method(old, new) == "tasks"
    choose = inspect.getsource(_choose_rechunk_method)
    assert "array.rechunk.method" in choose and "default_client" in choose and "_graph_size_threshold" in choose


def test_task_rechunk_layers_carry_their_arrays_chunks():
    import dask.array as da
    from dask.highlevelgraph import MaterializedLayer

    x = da.ones((100, 100), chunks=(100, 1))
    y = x.rechunk((1, 100))
    steps = [n for n in y.dask.layers if n.startswith("rechunk-merge-")]
    assert steps and y.name in steps
    for name in steps:
        layer = y.dask.layers[name]
        assert isinstance(layer, MaterializedLayer) and len(y.dask.dependencies[name]) == 1
        ann = layer.collection_annotations
        assert ann["type"] == "dask.array.core.Array" and ann["chunk_type"] == "numpy.ndarray"
        assert isinstance(ann["chunks"], tuple) and isinstance(ann["dtype"], np.dtype)
    assert y.dask.layers[y.name].collection_annotations["chunks"] == y.chunks
    assert x.dask.layers[x.name].collection_annotations["chunks"] == x.chunks


def test_old_to_new_and_the_p2p_threshold():
    from dask.array.rechunk import _graph_size_threshold, old_to_new

    assert old_to_new(((4, 4),), ((3, 5),)) == [[[(0, slice(0, 3))], [(0, slice(3, 4)), (1, slice(0, 4))]]]
    assert list(inspect.signature(_graph_size_threshold).parameters) == ["old_chunks", "new_chunks", "threshold"]
    old, new = ((10,), (2,) * 5), ((5, 5), (10,))
    assert _graph_size_threshold(old, new, 4) == 4 * (5 + 2)
    assert isinstance(dask.config.get("array.rechunk.threshold"), int)


def test_hlg_expressions_and_fusion_blocking():
    from dask._expr import HLGExpr
    from dask._task_spec import Task, fuse_linear_task_spec
    from dask.highlevelgraph import Layer, MaterializedLayer

    from shoal.shuffle.rechunk import ServiceTask

    assert HLGExpr._parameters[:3] == ["dsk", "low_level_optimizer", "output_keys"]
    assert list(inspect.signature(MaterializedLayer.__init__).parameters) == [
        "self", "mapping", "annotations", "collection_annotations",
    ]  # fmt: skip
    assert list(inspect.signature(Layer.cull).parameters) == ["self", "keys", "all_hlg_keys"]
    # a task whose block_fusion is True keeps its key through the array optimizer's fusion
    a = Task("a", int, 1)
    b = ServiceTask("b", int, a.ref())
    c = Task("c", int, b.ref())
    fused = fuse_linear_task_spec({"a": a, "b": b, "c": c}, keys=["c"])
    assert "b" in fused
    plain = fuse_linear_task_spec({"a": a, "b": Task("b", int, a.ref()), "c": c}, keys=["c"])
    assert "b" not in plain  # (what would happen to an output task otherwise)


def test_distributed_p2p_rechunk_layer_shape():
    # code written for distributed that names method="p2p" (dask then builds
    # distributed's layer): the rewrite reads these attributes of it
    pytest.importorskip("distributed")
    import dask.array as da

    y = da.ones((100, 100), chunks=(100, 1)).rechunk((1, 100), method="p2p")
    (layer,) = [v for v in y.dask.layers.values() if type(v).__name__ == "P2PRechunkLayer"]
    assert type(layer).__module__.startswith("distributed.")
    assert layer.name == y.name and layer.chunks == y.chunks
    for attr in ("token", "chunks_input", "name_input", "keepmap", "annotations", "collection_annotations"):
        assert hasattr(layer, attr), attr
    assert layer.keepmap.shape == tuple(len(c) for c in y.chunks)
    assert layer.collection_annotations["dtype"] == y.dtype
