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
