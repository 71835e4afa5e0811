"""How shoal treats CPython's cyclic garbage collector.

`paused()`: no collection while a block runs (building a graph in the user's process).
`freeze_survivors()`: the policy of the processes shoal starts (workers, schedulers).

CPython's full (generation 2) collection walks every tracked object. A worker that has
imported dask and pandas holds about 100,000 of them, nearly all modules, classes and
functions that live as long as the process. On the 2-core machine of the benchmarks a
walk takes 60-100 ms, and a 100-partition task shuffle causes about one per worker per
run: a tenth of the worker's CPU.

`freeze_survivors` moves what survives each full collection into the permanent
generation (`gc.freeze`), so the next full collection walks only what has been created
since. Once every `sweep_interval` seconds a full collection first thaws everything
(`gc.unfreeze`): reference cycles among objects that were once long-lived are still
reclaimed, at most that much later. Objects that are not in cycles are freed by their
reference counts as always, frozen or not.

Processes of the user (where a `Client` lives) keep their own collector settings: shoal
only pauses collections there for the length of a `paused()` block.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection while the block runs; the collector is re-enabled after it
    (even on error) unless it was already off. Containers the block leaves as garbage
    in cycles are then reclaimed by the next young collection, instead of surviving
    into the oldest generation while the block runs and forcing a full collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


#: seconds between full collections that walk every object
SWEEP_INTERVAL = 10.0


class _FreezeSurvivors:
    """A `gc.callbacks` entry: freeze after each full collection, thaw before a sweep."""

    def __init__(self, sweep_interval: float):
        self.sweep_interval = sweep_interval
        self.last_sweep = time.monotonic()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            now = time.monotonic()
            if now - self.last_sweep >= self.sweep_interval:
                self.last_sweep = now
                gc.unfreeze()  # joins the oldest generation: this collection walks it all
        else:
            gc.freeze()


_policy: _FreezeSurvivors | None = None


def freeze_survivors(sweep_interval: float = SWEEP_INTERVAL) -> None:
    """Install the policy in this process (once; later calls change nothing)."""
    global _policy
    if _policy is None:
        _policy = _FreezeSurvivors(sweep_interval)
        gc.callbacks.append(_policy)


def restore() -> None:
    """Remove the policy and thaw every frozen object."""
    global _policy
    if _policy is not None:
        gc.callbacks.remove(_policy)
        _policy = None
    gc.unfreeze()
