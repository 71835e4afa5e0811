"""Task functions for the profiler tests, importable in worker processes."""

from __future__ import annotations

import os
import time


def burn_cpu_here(n: int) -> int:
    """A known frame for the profile to find: pure Python work."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_until(path: str, timeout: float = 30.0) -> str:
    """Keep a task thread busy in `burn_cpu_here` until the file `path` exists."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        # long bursts between checks: the sampler can only take the GIL at the interpreter's
        # switch interval (5 ms) or at a syscall such as the `stat` of the check, so short
        # bursts would put nearly every sample in `os.path.exists`
        burn_cpu_here(200_000)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
    return "done"


def recurse_then_spin(depth: int, path: str) -> str:
    """`spin_until` at the bottom of `depth` nested calls (deeper than any profile keeps)."""
    if depth == 0:
        return spin_until(path)
    return recurse_then_spin(depth - 1, path)
