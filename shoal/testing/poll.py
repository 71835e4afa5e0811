"""Waiting for a condition with a deadline: the one way tests wait (never a blind sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["apoll", "poll"]


def poll(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Call `cond` until it returns something true (returned), at most `timeout` s;
    then `AssertionError` naming the condition."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition {getattr(cond, '__qualname__', cond)!r} not met within {timeout} s")
        time.sleep(interval)


async def apoll(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """`poll` for coroutines: waits with `asyncio.sleep`, so the loop keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition {getattr(cond, '__qualname__', cond)!r} not met within {timeout} s")
        await asyncio.sleep(interval)
