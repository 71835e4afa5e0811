"""Cutting and assembling the blocks of a rechunk give exactly the array dask's task
rechunk gives; the graph rewrite keeps names and makes O(input + output) tasks."""

from __future__ import annotations

import itertools

import dask
import dask.array as da
import numpy as np
import pytest
from dask.base import collections_to_expr

from shoal.protocol.serialize import dumps, loads
from shoal.shuffle.array import ArrayRechunk, axis_maps
from shoal.shuffle.book import ShuffleSpec
from shoal.shuffle.rechunk import RechunkLayer, all_to_all, rewrite


def blocks(a: np.ndarray, chunks: tuple) -> dict:
    """{flat C-order index: block} of `a` cut by `chunks`."""
    bounds = [np.cumsum((0,) + tuple(c)) for c in chunks]
    out = {}
    for flat, idx in enumerate(itertools.product(*(range(len(c)) for c in chunks))):
        out[flat] = a[tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, idx))]
    return out


CASES = [
    (((6,), (1,) * 5), ((1,) * 6, (5,))),  # columns -> rows
    (((4, 4, 2), (3, 3)), ((2, 5, 3), (1, 5))),  # uneven, both axes
    (((5, 5),), ((3, 3, 4),)),  # 1-d
    (((2, 2), (3,), (1, 1, 2)), ((4,), (1, 2), (2, 2))),  # 3-d
]


@pytest.mark.parametrize("old,new", CASES)
def test_cut_and_assemble_is_the_rechunk(old, new):
    shape = tuple(sum(c) for c in old)
    a = np.arange(np.prod(shape), dtype="f8").reshape(shape)
    nout = int(np.prod([len(c) for c in new]))
    spec = ShuffleSpec("r", tuple(range(nout)), tuple(("o", p) for p in range(nout)), (), "b")
    r = loads(dumps(ArrayRechunk(spec, old, new, a.dtype)))  # it travels in tasks
    received: dict = {}
    for inp, block in blocks(a, old).items():
        for part, piece in r.split(block, inp)[0].items():
            assert piece.flags.c_contiguous
            received.setdefault(part, []).append((inp, loads(dumps(piece))))
    want = blocks(a, new)
    assert sorted(received) == list(range(nout))
    for part, pieces in received.items():
        np.testing.assert_array_equal(r.assemble(part, sorted(pieces, key=lambda p: p[0])), want[part])


def test_only_wanted_outputs_get_pieces_and_a_missing_piece_is_an_error():
    old, new = ((4, 4), (4, 4)), ((2, 2, 2, 2), (8,))
    spec = ShuffleSpec("r", (1, 2), (("o", 1), ("o", 2)), (), "b")
    r = ArrayRechunk(spec, old, new, np.dtype("i8"), wanted=frozenset({1, 2}))
    a = np.arange(64).reshape(8, 8)
    got = {p for inp, b in blocks(a, old).items() for p in r.split(b, inp)[0]}
    assert got == {1, 2}
    (inp, b), *_ = blocks(a, old).items()
    with pytest.raises(RuntimeError, match="got 8 of its 16 elements"):
        r.assemble(1, [(0, r.split(b, 0)[0][1])])
    assert r.empty(3).shape == (2, 8)


def test_axis_maps():
    cuts, offsets = axis_maps((4, 4), (3, 5))
    assert cuts == [[(0, slice(0, 3)), (1, slice(3, 4))], [(1, slice(0, 4))]]
    assert offsets == [{0: 0}, {0: 0, 1: 1}]


def test_all_to_all_is_daskes_p2p_test():
    assert all_to_all(((100,), (1,) * 100), ((1,) * 100, (100,)))
    assert not all_to_all(((100,), (10,) * 10), ((50, 50), (10,) * 10))


def graph_of(collection):
    expr = collections_to_expr([collection], True).optimize()
    return expr, rewrite(expr)


def test_rewrite_keeps_keys_and_makes_linear_graphs():
    x = da.random.default_rng(0).random((100, 100), chunks=(100, 10))
    y = x.rechunk((10, 100))
    expr, new = graph_of(y)
    assert new is not expr and new.__dask_keys__() == expr.__dask_keys__()
    graph = new.__dask_graph__()
    names = [k[0] if isinstance(k, tuple) else k for k in graph]
    assert sum(n.startswith("rechunk-transfer-") for n in names) == 10
    assert sum(n.startswith("rechunk-barrier-") for n in names) == 1
    assert sum(n == y.name for n in names) == 10
    assert not any(n.startswith(("rechunk-split-", "rechunk-merge-")) and n != y.name for n in names)
    # the outputs are not fused into their users: the scheduler pins them by key
    _, summed = graph_of(y.sum())
    assert sum(1 for k in summed.__dask_graph__() if isinstance(k, tuple) and k[0] == y.name) == 10
    # a part of the output: only its blocks' pieces are cut and sent
    _, part = graph_of(y[:20])
    g = part.__dask_graph__()
    barrier = next(v for k, v in g.items() if isinstance(k, str) and k.startswith("rechunk-barrier-"))
    assert barrier.args[0].parts == (0, 1)


def test_left_alone():
    x = da.random.default_rng(0).random((100, 100), chunks=(100, 10))
    for y in (
        x.rechunk((50, 10)),  # not all-to-all
        x.astype(object).rechunk((10, 100)),  # object dtype
    ):
        expr, new = graph_of(y)
        assert new is expr, y
    expr, new = graph_of(x.sum())
    assert new is expr
    with dask.config.set({"array.rechunk.method": "tasks"}):
        expr, new = graph_of(x.rechunk((10, 100)))
        assert new is expr


def test_layer_culls_to_the_wanted_blocks():
    layer = RechunkLayer("n", "t", "i", ((2, 2),), ((1, 1, 1, 1),), np.dtype("f8"))
    assert layer.get_output_keys() == {("n", j) for j in range(4)}
    culled, deps = layer.cull({("n", 2), ("other", 0)}, set())
    assert culled.get_output_keys() == {("n", 2)}
    assert deps[("n", 2)] == {"rechunk-barrier-t"} and deps[("rechunk-transfer-t", 1)] == {("i", 1)}
    assert layer.cull({("other", 0)}, set())[1] == {}


def test_graphs_with_tuple_layer_names_are_left_alone():
    from dask import delayed

    d = delayed(sum)([1, 2], dask_key_name=("z", 1))
    expr, new = graph_of(d)
    assert new is expr


def test_output_blocks_are_writable():
    spec = ShuffleSpec("r", (0,), (("o", 0),), (), "b")
    r = ArrayRechunk(spec, ((4,),), ((4,),), np.dtype("f8"))
    ro = np.frombuffer(bytes(32), dtype="f8")  # as a piece arrives in received bytes
    out = r.assemble(0, [(0, ro)])
    assert out.flags.writeable and np.array_equal(out, ro)
