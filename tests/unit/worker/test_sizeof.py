"""The worker's result sizing: dask.sizeof's figures, faster for pandas frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dask.sizeof import sizeof as dask_sizeof

from shoal.worker import sizeof as sizing


def _close(a: int, b: int) -> bool:
    return abs(a - b) <= 0.05 * b


@pytest.mark.parametrize(
    "obj",
    [
        pd.DataFrame({"a": np.arange(5000), "b": np.random.random(5000), "c": np.arange(5000) % 7 == 0}),
        pd.DataFrame({"a": np.arange(5000), "b": np.random.random(5000)}).set_index("a"),
        pd.DataFrame({"s": [f"item-{i}" for i in range(3000)]}),  # string dtype
        pd.Series(np.random.random(4000)),
        pd.Series(np.arange(4000), index=pd.date_range("2020", periods=4000, freq="s")),
    ],
)
def test_pandas_sizes_match_dask_within_a_few_percent(obj):
    assert _close(sizing.sizeof(obj), dask_sizeof(obj))


def test_object_columns_and_other_types_go_to_dask_sizeof(monkeypatch):
    objects = pd.DataFrame({"o": pd.array([{"x": i} for i in range(500)], dtype=object)})
    asked = []
    monkeypatch.setattr(sizing, "dask_sizeof", lambda obj: asked.append(obj) or 7)
    for obj in (objects, objects["o"], np.zeros(1000), [1, 2, 3], "text"):
        asked.clear()
        assert sizing.sizeof(obj) == 7 and asked == [obj]


def test_shuffle_group_result_sums_its_frames():
    from dask.dataframe.backends import ShuffleGroupResult

    frame = pd.DataFrame({"a": np.arange(1000), "b": np.random.random(1000)})
    groups = ShuffleGroupResult({i: frame.iloc[i * 100 : (i + 1) * 100] for i in range(10)})
    assert _close(sizing.sizeof(groups), dask_sizeof(groups))


def test_a_sizeof_registered_by_the_user_wins(monkeypatch):
    monkeypatch.setattr(sizing, "_FAST", {})
    lookup = dask_sizeof._lookup
    monkeypatch.setitem(lookup, pd.DataFrame, lambda df: 42)
    assert sizing.sizeof(pd.DataFrame({"a": [1, 2, 3]})) == 42
