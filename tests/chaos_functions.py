"""Deterministic task functions for the multi-host and chaos tests. They live in a module
of their own (on the path of the test process, its worker processes, and the CLI workers
those tests start) so results computed on a cluster can be compared bit for bit with the
same functions run locally."""

from __future__ import annotations

import time

import numpy as np


def block(i: int, n: int, delay: float) -> np.ndarray:
    """`n` floats seeded by `i`, after `delay` seconds of pretend work."""
    time.sleep(delay)
    return np.random.default_rng(i).random(n)


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A new block from two others (so data must move to where one of them lives)."""
    return a * 0.5 + b[::-1] * 0.25


def total(blocks: list) -> float:
    """The sum of all blocks, in order (float addition is order-sensitive)."""
    out = 0.0
    for b in blocks:
        out += float(np.sum(b))
    return out


def shuffle_workload(nparts: int = 250, rows: int = 200):
    """A task-based shuffle of a random frame on `k` (about 40 tasks per partition:
    10,157 tasks for 250 partitions), as a dask collection."""
    import dask.dataframe as dd
    import pandas as pd

    rng = np.random.default_rng(42)
    n = nparts * rows
    frame = pd.DataFrame({"k": rng.integers(0, 500, n), "x": rng.random(n), "i": rng.integers(0, 1000, n)})
    parts = dd.from_pandas(frame, npartitions=nparts, sort=False)
    return parts.shuffle(on="k", npartitions=nparts, shuffle_method="tasks")


def reduce_workload(shuffled):
    """Per-key sums of the shuffled frame (a tree reduction over all partitions)."""
    return shuffled.groupby("k").agg({"x": "sum", "i": "sum"}, split_out=1)
