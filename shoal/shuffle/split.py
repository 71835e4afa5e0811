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
    pickle, unpickle and compare: a third of an output's assembly).

    Two things need not travel at all: the index when the shuffle ignores it (`index`
    is None), and the partitioning column when each of its values is the number of the
    output partition the row goes to (dask's ``_partitions`` column, as set_index,
    merge and df.shuffle make it): that column's entry is then its dtype, and the
    receiver fills it in."""

    __slots__ = ("arrays", "index", "rows")

    def __init__(self, arrays: list, index: Any, rows: int):
        self.arrays = arrays
        self.index = index
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __reduce__(self) -> Any:
        return (Columns, (self.arrays, self.index, self.rows))


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


def unpack_pieces(pieces: list, meta: Any, ignore_index: bool, part: int | None = None) -> Any:
    """Output partition `part` from its pieces (`Columns` or frames, in input order)."""
    if pieces and all(type(p) is Columns for p in pieces) and _plain(meta):
        import numpy as np
        import pandas as pd

        rows = sum(p.rows for p in pieces)
        arrays = [_column(pieces, j, rows, part) for j in range(len(meta.columns))]
        if ignore_index:  # as dask's concat of its pieces: each piece numbered from 0
            if len(pieces) == 1:
                index = pd.RangeIndex(rows)
            else:
                index = pd.Index(np.concatenate([np.arange(p.rows) for p in pieces]), copy=False)
        else:
            index = pd.Index(np.concatenate([p.index for p in pieces]), name=meta.index.name, copy=False)
        out = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
        out.columns = meta.columns
        return out
    frames = [_frame(p, meta, part) if type(p) is Columns else p for p in pieces]
    return assemble_frame(frames, meta, ignore_index)


def _column(pieces: list, j: int, rows: int, part: int | None) -> Any:
    import numpy as np

    first = pieces[0].arrays[j]
    if isinstance(first, np.dtype):  # the partitioning column, left out: every value is `part`
        if part is None:
            raise ValueError("the pieces left their partitioning column out: give the output partition")
        return np.full(rows, part, dtype=first)
    return np.concatenate([p.arrays[j] for p in pieces])


def _frame(p: Columns, meta: Any, part: int | None) -> Any:
    import pandas as pd

    index = pd.RangeIndex(p.rows) if p.index is None else pd.Index(p.index, name=meta.index.name)
    arrays = [_column([p], j, p.rows, part) for j in range(len(p.arrays))]
    out = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
    out.columns = meta.columns
    return out


def split_frame(
    df: Any, column: Any, npartitions: int, ignore_index: bool, wanted: Any = None, groups: Any = None
) -> tuple[dict[int, Any], bool]:
    """``({output partition: non-empty piece of df}, apart)``: only the partitions in
    `wanted` (a container) when given, or in `groups` (lists of output partitions, one
    per receiver) when given. A frame of plain numpy columns is split into `Columns`:
    one stable sort, one take per column and group, every piece a contiguous slice of
    its group's arrays (so it pickles without a copy), without the index when
    `ignore_index`, and without `column` when its values are the output partitions;
    `apart` is then True when `groups` was given: no two groups' pieces share memory
    (what one receiver keeps does not hold another's rows alive). Any other frame goes
    through dask's `shuffle_group` (`apart` False). The rows of a piece keep their
    order either way."""
    if type(column) is str and column in df.columns and _plain(df):
        import numpy as np

        col = df[column].to_numpy()
        ind = (col % npartitions).astype(np.min_scalar_type(npartitions), copy=False)
        apart = groups is not None
        if groups is None:
            groups = [range(npartitions) if wanted is None else sorted(wanted)]
        flat = [p for g in groups for p in g]
        if flat == list(range(npartitions)):
            key = ind
        else:  # each group's partitions next to each other; the others (not wanted) last
            rank = np.full(npartitions, len(flat), dtype=np.int64)
            rank[flat] = np.arange(len(flat))
            key = rank[ind].astype(np.min_scalar_type(len(flat)), copy=False)
        # a stable sort of small integers is numpy's radix sort: O(rows)
        order = np.argsort(key, kind="stable")
        # rows of the r-th partition of `flat`: order[starts[r]:starts[r + 1]]
        starts = [0, *np.cumsum(np.bincount(key, minlength=len(flat) + 1)).tolist()]
        # the column is each row's output partition already (dask's `_partitions`): no
        # need to send it
        implied = col.dtype.kind in "iu" and len(col) > 0 and 0 <= col.min() and col.max() < npartitions
        values = [None if implied and name == column else df.iloc[:, j].to_numpy() for j, name in enumerate(df.columns)]
        index = None if ignore_index else df.index.to_numpy()
        out = {}
        r = 0
        for g in groups:
            lo = starts[r]
            rows = order[lo : starts[r + len(g)]]
            cols = [col.dtype if v is None else np.take(v, rows) for v in values]
            idx = None if index is None else np.take(index, rows)
            for p in g:
                a, b = starts[r] - lo, starts[r + 1] - lo
                r += 1
                if b > a:
                    arrays = [c if isinstance(c, np.dtype) else c[a:b] for c in cols]
                    out[p] = Columns(arrays, None if idx is None else idx[a:b], b - a)
        return out, apart
    from dask.dataframe.shuffle import shuffle_group

    if groups is not None:
        wanted = {p for g in groups for p in g}
    split = shuffle_group(df, column, 0, npartitions, npartitions, ignore_index, npartitions)
    return {int(p): piece for p, piece in split.items() if len(piece) and (wanted is None or p in wanted)}, False


def assemble_frame(pieces: list, meta: Any, ignore_index: bool) -> Any:
    """Output partition from its pieces (in input order); `meta` when there are none."""
    from dask.dataframe.core import _concat

    if not pieces:
        return meta.copy()
    if len(pieces) == 1:
        out = pieces[0]
        return out.reset_index(drop=True) if ignore_index else out
    return _concat(pieces, ignore_index=ignore_index)
