"""Cutting an input block of a rechunk into the pieces of its output blocks, and
assembling an output block from its pieces. PURE (numpy and dask's chunk arithmetic).

A rechunk from chunks `old` to chunks `new` is, along each axis, dask's `old_to_new`
map (for every new chunk, the old chunks and the slices of them it is made of); along
several axes, the Cartesian product of those maps. So input block ``i`` (an n-d
index) is cut, for every output block ``j`` it overlaps, into the piece
``block[s_0, ..., s_n]`` (the slices of ``old_to_new``), and output block ``j`` is
an empty array of its shape with every piece copied to its offset: one copy per
element on each side, the same values dask's task rechunk (`concatenate3` of the
sliced blocks) gives.

Blocks and pieces are numbered in C order (`numpy.ravel_multi_index`), which is how the
service names inputs and output partitions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArrayRechunk", "axis_maps"]


def axis_maps(old: tuple, new: tuple) -> tuple[list, list]:
    """For one axis of a rechunk from chunk sizes `old` to `new`: (cuts, offsets).
    ``cuts[i]``: the (new chunk, slice of old chunk i) pairs old chunk i is cut into;
    ``offsets[(i, j)]`` (a dict per new chunk j): where old chunk i's piece starts in
    new chunk j."""
    from dask.array.rechunk import old_to_new

    (per_new,) = old_to_new((tuple(old),), (tuple(new),))
    cuts: list[list] = [[] for _ in old]
    offsets: list[dict] = []
    for j, sources in enumerate(per_new):
        at = 0
        where = {}
        for i, sl in sources:
            start = sl.start or 0
            stop = old[i] if sl.stop is None else sl.stop
            if stop <= start:
                continue
            cuts[i].append((j, slice(start, stop)))
            where[i] = at
            at += stop - start
        offsets.append(where)
    return cuts, offsets


class ArrayRechunk:
    """What a worker needs to cut and assemble the blocks of one rechunk (travels inside
    its tasks, so kept small: per-axis maps, not the n-d product)."""

    __slots__ = ("spec", "old", "new", "dtype", "wanted", "_cuts", "_offsets")

    def __init__(self, spec: Any, old: tuple, new: tuple, dtype: Any, wanted: Any = None):
        self.spec = spec
        self.old = tuple(tuple(int(c) for c in axis) for axis in old)
        self.new = tuple(tuple(int(c) for c in axis) for axis in new)
        self.dtype = dtype
        #: the output partitions wanted, when not all are
        self.wanted = wanted
        self._cuts = None
        self._offsets = None

    def __reduce__(self) -> Any:
        return (ArrayRechunk, (self.spec, self.old, self.new, self.dtype, self.wanted))

    @property
    def id(self) -> str:
        return self.spec.id

    def _maps(self) -> tuple[list, list]:
        if self._cuts is None:
            maps = [axis_maps(o, n) for o, n in zip(self.old, self.new)]
            self._cuts = [m[0] for m in maps]
            self._offsets = [m[1] for m in maps]
        return self._cuts, self._offsets  # type: ignore[return-value]

    def shape_in(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.old)

    def shape_out(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.new)

    def split(self, block: Any, inp: int, groups: Any = None) -> tuple[dict[int, Any], bool]:
        """``({output partition: piece of input block inp}, False)`` (only wanted
        outputs). A piece is a contiguous array: a view of `block` where it can be one
        (so it pickles without a copy), else a copy; so pieces may share memory
        whatever the receivers (`groups`) are."""
        import itertools

        import numpy as np

        cuts, _ = self._maps()
        index = np.unravel_index(inp, self.shape_in())
        per_axis = [cuts[a][int(i)] for a, i in enumerate(index)]
        nout = self.shape_out()
        wanted = self.wanted
        block = np.asarray(block)
        out = {}
        for combo in itertools.product(*per_axis):
            part = int(np.ravel_multi_index(tuple(j for j, _ in combo), nout))
            if wanted is not None and part not in wanted:
                continue
            piece = block[tuple(s for _, s in combo)]
            out[part] = piece if piece.flags.c_contiguous else np.ascontiguousarray(piece)
        return out, False

    def assemble(self, part: int, pieces: list[tuple[int, Any]]) -> Any:
        """Output block `part` from its (input partition, piece) pairs."""
        import numpy as np

        _, offsets = self._maps()
        index = tuple(int(j) for j in np.unravel_index(part, self.shape_out()))
        shape = tuple(self.new[a][j] for a, j in enumerate(index))
        if len(pieces) == 1 and pieces[0][1].shape == shape and pieces[0][1].flags.writeable:
            return pieces[0][1]  # (a read-only one, in received bytes, is copied: users write blocks)
        out = np.empty(shape, dtype=pieces[0][1].dtype if pieces else self.dtype)
        shape_in = self.shape_in()
        filled = 0
        for inp, piece in pieces:
            src = np.unravel_index(inp, shape_in)
            at = tuple(slice(offsets[a][j][int(i)], offsets[a][j][int(i)] + piece.shape[a])
                       for a, (i, j) in enumerate(zip(src, index)))  # fmt: skip
            out[at] = piece
            filled += piece.size
        if filled != out.size:
            raise RuntimeError(
                f"rechunk {self.id}: output block {index} got {filled} of its {out.size} elements"
            )
        return out

    def empty(self, part: int) -> Any:
        import numpy as np

        index = np.unravel_index(part, self.shape_out())
        return np.empty(tuple(self.new[a][int(j)] for a, j in enumerate(index)), dtype=self.dtype)
