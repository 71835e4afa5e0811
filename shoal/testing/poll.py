"""Waiting for a condition with a deadline: the one way tests wait (never a blind sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["apoll", "poll"]


def _stepper(cond: Callable[[], Any], timeout: float) -> Callable[[], tuple[bool, Any]]:
    """One try of `cond` per call: ``(True, value)`` once true; `AssertionError` naming
    the condition once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout

    def step() -> tuple[bool, Any]:
        value = cond()
        if value:
            return True, value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition {getattr(cond, '__qualname__', cond)!r} not met within {timeout} s")
        return False, None

    return step


def poll(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Call `cond` until it returns something true (returned), at most `timeout` s;
    then `AssertionError` naming the condition."""
    step = _stepper(cond, timeout)
    while True:
        done, value = step()
        if done:
            return value
        time.sleep(interval)


async def apoll(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """`poll` for coroutines: waits with `asyncio.sleep`, so the loop keeps running."""
    step = _stepper(cond, timeout)
    while True:
        done, value = step()
        if done:
            return value
        await asyncio.sleep(interval)
