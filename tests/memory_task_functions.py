"""Task functions for the memory tests (importable by worker processes)."""

from __future__ import annotations

import os
import time

import numpy as np

#: memory a task holds outside the worker's data store (unmanaged), by name
_HELD: dict[str, bytearray] = {}


def block(i: int, nbytes: int) -> np.ndarray:
    """`nbytes` of fresh, incompressible data (random floats)."""
    return np.random.default_rng(i).random(nbytes // 8)


def hold(name: str, nbytes: int) -> int:
    """Keep `nbytes` alive in the worker process, outside any result (touch every page)."""
    buf = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        buf[i] = 1
    _HELD[name] = buf
    return os.getpid()


def drop(name: str) -> None:
    _HELD.pop(name, None)


def hog(nbytes: int) -> None:
    """Allocate `nbytes` and keep it until the worker is killed."""
    buf = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        buf[i] = 1
    while True:
        time.sleep(0.05)


def total(*blocks: np.ndarray) -> float:
    return float(sum(b.sum() for b in blocks))
