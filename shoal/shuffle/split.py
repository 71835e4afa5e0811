"""Splitting an input partition by output partition, and assembling an output
partition from its pieces. PURE (pandas and numpy only).

Both do what dask's single-stage task shuffle (`SimpleShuffle`) does, so a shuffle on
shoal gives the very frames the synchronous scheduler gives: an input is split once by
its ``_partitions`` column (dask's `shuffle_group`, a stable group sort: rows keep their
order inside each piece), and an output is the concatenation of its pieces in input
order (dask's `_concat`: empty pieces dropped, the first piece if all are empty).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Columns", "split_frame", "assemble_frame", "unpack_pieces"]

#: numpy dtype kinds a piece may travel as bare arrays: bool, (u)int, float, complex,
#: datetime, timedelta
_PLAIN = frozenset("biufcmM")


class Columns:
    """A piece as bare numpy arrays (its columns, in order, and its index): pickled,
    it is the arrays' bytes and a few bytes more, where a DataFrame also carries its
    block layout and its column labels (an Arrow string index under pandas 3, slow to
    pickle, unpickle and compare: a third of an output's assembly)."""

    __slots__ = ("arrays", "index")

    def __init__(self, arrays: list, index: Any):
        self.arrays = arrays
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __reduce__(self) -> Any:
        return (Columns, (self.arrays, self.index))


def _plain(df: Any) -> bool:
    import numpy as np
    import pandas as pd

    idx = df.index
    return (
        df.columns.is_unique
        and type(idx) in (pd.Index, pd.RangeIndex)
        and isinstance(idx.dtype, np.dtype)
        and idx.dtype.kind in _PLAIN
        and all(isinstance(dt, np.dtype) and dt.kind in _PLAIN for dt in df.dtypes)
    )


def unpack_pieces(pieces: list, meta: Any, ignore_index: bool) -> Any:
    """The output partition from its pieces (`Columns` or frames, in input order)."""
    if pieces and not ignore_index and all(type(p) is Columns for p in pieces) and _plain(meta):
        import numpy as np
        import pandas as pd

        n = len(meta.columns)
        arrays = [np.concatenate([p.arrays[j] for p in pieces]) for j in range(n)]
        index = pd.Index(np.concatenate([p.index for p in pieces]), name=meta.index.name, copy=False)
        out = pd.DataFrame(dict(zip(range(n), arrays)), index=index, copy=False)
        out.columns = meta.columns
        return out
    frames = [_frame(p, meta) if type(p) is Columns else p for p in pieces]
    return assemble_frame(frames, meta, ignore_index)


def _frame(p: Columns, meta: Any) -> Any:
    import pandas as pd

    index = pd.Index(p.index, name=meta.index.name)
    out = pd.DataFrame(dict(zip(range(len(p.arrays)), p.arrays)), index=index, copy=False)
    out.columns = meta.columns
    return out


def split_frame(df: Any, column: Any, npartitions: int, ignore_index: bool, wanted: Any = None) -> dict[int, Any]:
    """{output partition: non-empty piece of `df`} (only the partitions in `wanted`, a
    container, when given). A frame of plain numpy columns is split into `Columns`:
    one stable sort, one take per column, and every piece a contiguous slice of those
    (so it pickles without a copy); any other frame with dask's `shuffle_group`. The
    rows of a piece keep their order either way."""
    if type(column) is str and column in df.columns and not ignore_index and _plain(df):
        import numpy as np

        # a stable sort of small integers is numpy's radix sort: O(rows)
        ind = (df[column].to_numpy() % npartitions).astype(np.min_scalar_type(npartitions), copy=False)
        order = np.argsort(ind, kind="stable")
        counts = np.bincount(ind, minlength=npartitions)
        ends = np.cumsum(counts)
        cols = [np.take(df.iloc[:, j].to_numpy(), order) for j in range(df.shape[1])]
        index = np.take(df.index.to_numpy(), order)
        out = {}
        for p in np.flatnonzero(counts).tolist():
            if wanted is None or p in wanted:
                b = int(ends[p])
                a = b - int(counts[p])
                out[p] = Columns([c[a:b] for c in cols], index[a:b])
        return out
    from dask.dataframe.shuffle import shuffle_group

    groups = shuffle_group(df, column, 0, npartitions, npartitions, ignore_index, npartitions)
    return {int(p): piece for p, piece in groups.items() if len(piece) and (wanted is None or p in wanted)}


def assemble_frame(pieces: list, meta: Any, ignore_index: bool) -> Any:
    """Output partition from its pieces (in input order); `meta` when there are none."""
    from dask.dataframe.core import _concat

    if not pieces:
        return meta.copy()
    if len(pieces) == 1:
        out = pieces[0]
        return out.reset_index(drop=True) if ignore_index else out
    return _concat(pieces, ignore_index=ignore_index)
