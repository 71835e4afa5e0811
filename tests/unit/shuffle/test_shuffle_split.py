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
    ours, apart = split_frame(df, "_partitions", 7, ignore_index)
    assert not apart
    assert set(ours) == {p for p, v in ref.items() if len(v)}
    if name in ("plain", "range-index"):
        assert all(type(p) is Columns for p in ours.values())
        for piece in ours.values():  # neither the implied column nor an ignored index travels
            assert isinstance(piece.arrays[-1], np.dtype)
            assert (piece.index is None) == ignore_index
    for p, piece in ours.items():
        got = unpack_pieces([loads(dumps(piece))], meta, ignore_index, p)
        want = _concat([ref[p]], ignore_index=ignore_index)
        pd.testing.assert_frame_equal(got, want)
    # one output from the pieces of several inputs, in input order
    parts = [split_frame(df.iloc[i::3], "_partitions", 7, ignore_index)[0] for i in range(3)]
    refs = [shuffle_group(df.iloc[i::3], "_partitions", 0, 7, 7, ignore_index, 7) for i in range(3)]
    got = unpack_pieces([loads(dumps(s[2])) for s in parts if 2 in s], meta, ignore_index, 2)
    want = _concat([r[2] for r in refs], ignore_index=ignore_index)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("values", [[0, 9, 3, 12, 5], [-1, 2, 3, 0, 1], [0.0, 1.0, 2.0, 1.0, 0.0]])
def test_a_column_that_is_not_the_output_partition_travels(values):
    """Only a column of integers already in [0, npartitions) is left out and filled in
    by the receiver: any other partitioning column travels as it is."""
    df = pd.DataFrame({"_partitions": values, "v": np.arange(5.0)})
    ref = shuffle_group(df, "_partitions", 0, 4, 4, False, 4)
    ours, _ = split_frame(df, "_partitions", 4, False)
    for p, piece in ours.items():
        assert not isinstance(piece.arrays[0], np.dtype)
        got = unpack_pieces([loads(dumps(piece))], df.iloc[:0], False, p)
        pd.testing.assert_frame_equal(got, _concat([ref[p]]))


def test_a_left_out_column_needs_the_output_partition():
    df = pd.DataFrame({"_partitions": [0, 1, 1], "v": [1.0, 2.0, 3.0]})
    piece = split_frame(df, "_partitions", 2, False)[0][1]
    with pytest.raises(ValueError, match="partitioning column"):
        unpack_pieces([piece], df.iloc[:0], False)


def test_wanted_and_empty():
    df = pd.DataFrame({"_partitions": [0, 1, 2, 2], "v": [1.0, 2.0, 3.0, 4.0]})
    assert set(split_frame(df, "_partitions", 4, False, wanted={2, 3})[0]) == {2}
    assert split_frame(df.iloc[:0], "_partitions", 4, False)[0] == {}
    meta = df.iloc[:0]
    pd.testing.assert_frame_equal(unpack_pieces([], meta, False), meta)


def test_kept_pieces_are_copied_into_one_block_of_their_own():
    from shoal.shuffle.worker import _compact

    df = pd.DataFrame({"k": np.arange(20_000) % 7, "x": np.random.default_rng(0).random(20_000)})
    pieces, _ = split_frame(df, "k", 7, False)
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


@pytest.mark.parametrize("ignore_index", [False, True])
def test_split_by_receiver_gives_the_same_pieces_and_keeps_groups_apart(ignore_index):
    """With the output partitions grouped by receiver, each group's pieces are cut from
    arrays of their own (a receiver keeps no other receiver's rows alive) and are the
    same pieces as without groups."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"k": rng.integers(0, 1000, 3000), "x": rng.random(3000)}, index=rng.permutation(3000))
    df["_partitions"] = df["k"] % 9
    plain, _ = split_frame(df, "_partitions", 9, ignore_index)
    groups = [[4, 0, 7], [1, 2, 3, 5, 6, 8]]
    ours, apart = split_frame(df, "_partitions", 9, ignore_index, groups=groups)
    assert apart and sorted(ours) == sorted(plain)
    meta = df.iloc[:0]
    for p in ours:
        pd.testing.assert_frame_equal(unpack_pieces([ours[p]], meta, ignore_index, p),
                                      unpack_pieces([plain[p]], meta, ignore_index, p))  # fmt: skip
    for p in groups[0]:
        for q in groups[1]:
            assert not np.shares_memory(ours[p].arrays[0], ours[q].arrays[0])
    # a group may leave partitions out (a shuffle of which only some outputs are wanted)
    some, _ = split_frame(df, "_partitions", 9, ignore_index, groups=[[3], [8]])
    assert sorted(some) == [3, 8]
    pd.testing.assert_frame_equal(unpack_pieces([some[8]], meta, ignore_index, 8),
                                  unpack_pieces([plain[8]], meta, ignore_index, 8))  # fmt: skip
