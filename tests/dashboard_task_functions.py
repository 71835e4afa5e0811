"""Task functions for the dashboard tests (importable in worker processes)."""

from __future__ import annotations

import time


def slow_square(x, delay=0.05):
    """A task that takes `delay` seconds, so the dashboard sees it running."""
    time.sleep(delay)
    return x * x
