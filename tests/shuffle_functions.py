"""Functions the shuffle tests run in tasks (importable by worker processes)."""

from __future__ import annotations

import time


def slow_partition(df, delay=0.05):
    time.sleep(delay)
    return df


def slow_block(block, delay=0.05):
    time.sleep(delay)
    return block
