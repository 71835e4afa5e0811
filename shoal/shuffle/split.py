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

__all__ = ["split_frame", "assemble_frame"]


def split_frame(df: Any, column: Any, npartitions: int, ignore_index: bool, wanted: Any = None) -> dict[int, Any]:
    """{output partition: non-empty piece of `df`} (only the partitions in `wanted`, a
    container, when given)."""
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
