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
