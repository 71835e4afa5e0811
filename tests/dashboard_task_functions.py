"""Task functions for the dashboard tests (importable in worker processes)."""

from __future__ import annotations

import time


def slow_square(x, delay=0.05):
    """A task that takes `delay` seconds, so the dashboard sees it running."""
    time.sleep(delay)
    return x * x


def busy(x, seconds=0.2):
    """Keeps a task thread busy in Python code (so the profiler has samples)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return x


def add(*args):
    return sum(args)


def fails(x):
    raise ValueError(f"task failed on purpose with {x}")
