"""Splitting and assembling give exactly what dask's single-stage shuffle gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dask.dataframe.core import _concat
from dask.dataframe.shuffle import shuffle_group

from shoal.protocol.serialize import dumps, loads
from shoal.shuffle.split import Columns, split_frame, unpack_pieces


def frames():
    rng = np.random.default_rng(3)
    n = 500
    base = pd.DataFrame(
        {"k": rng.integers(-50, 50, n), "x": rng.random(n), "b": rng.random(n) > 0.5,
         "t": pd.to_datetime(rng.integers(0, 10**9, n), unit="s")},
        index=pd.Index(rng.integers(0, 10**6, n), name="idx"),
    )  # fmt: skip
    yield "plain", base
    yield "strings", base.assign(s=rng.choice(["a", "bb"], n))
    yield "categorical", base.assign(c=pd.Categorical(rng.choice(["x", "y"], n)))
    yield "range-index", base.reset_index(drop=True)


@pytest.mark.parametrize("name,df", list(frames()))
@pytest.mark.parametrize("ignore_index", [False, True])
def test_split_and_assemble_equal_dasks(name, df, ignore_index):
    df = df.assign(_partitions=df["k"] % 7)
    meta = df.iloc[:0]
    ref = shuffle_group(df, "_partitions", 0, 7, 7, ignore_index, 7)
    ours = split_frame(df, "_partitions", 7, ignore_index)
    assert set(ours) == {p for p, v in ref.items() if len(v)}
    if name in ("plain", "range-index") and not ignore_index:
        assert all(type(p) is Columns for p in ours.values())
    for p, piece in ours.items():
        got = unpack_pieces([loads(dumps(piece))], meta, ignore_index)
        want = _concat([ref[p]], ignore_index=ignore_index)
        pd.testing.assert_frame_equal(got, want)
    # one output from the pieces of several inputs, in input order
    parts = [split_frame(df.iloc[i::3], "_partitions", 7, ignore_index) for i in range(3)]
    refs = [shuffle_group(df.iloc[i::3], "_partitions", 0, 7, 7, ignore_index, 7) for i in range(3)]
    got = unpack_pieces([loads(dumps(s[2])) for s in parts if 2 in s], meta, ignore_index)
    want = _concat([r[2] for r in refs], ignore_index=ignore_index)
    pd.testing.assert_frame_equal(got, want)


def test_wanted_and_empty():
    df = pd.DataFrame({"_partitions": [0, 1, 2, 2], "v": [1.0, 2.0, 3.0, 4.0]})
    assert set(split_frame(df, "_partitions", 4, False, wanted={2, 3})) == {2}
    assert split_frame(df.iloc[:0], "_partitions", 4, False) == {}
    meta = df.iloc[:0]
    pd.testing.assert_frame_equal(unpack_pieces([], meta, False), meta)


def test_kept_pieces_are_copied_into_one_block_of_their_own():
    from shoal.shuffle.worker import _compact

    df = pd.DataFrame({"k": np.arange(20_000) % 7, "x": np.random.default_rng(0).random(20_000)})
    pieces = split_frame(df, "k", 7, False)
    payload = [dumps(p) for p in pieces.values()]
    kept = _compact(payload[:3])
    blocks = {id(b.obj) for p in kept for b in p.buffers}
    assert len(blocks) == 1  # one block for all of them
    block = kept[0].buffers[0].obj
    assert len(block) == sum(p.nbytes - len(p.header) for p in kept)  # only theirs, not the whole split
    for p, q in zip(payload[:3], kept):
        a, b = loads(p), loads(q)
        np.testing.assert_array_equal(a.index, b.index)
        for x, y in zip(a.arrays, b.arrays):
            np.testing.assert_array_equal(x, y)
            assert not np.shares_memory(x, y)
