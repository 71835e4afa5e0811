"""Background tasks with an owner: the one helper every server and the client use.

`BackgroundTasks.spawn(coro)` starts a task and keeps it; `close()` cancels every task
still running (except the one calling it) and awaits them, so nothing outlives its owner
and no "Task was destroyed but it is pending" warning or stray exception is left behind.
A task that fails is logged when it ends (nobody else would see its exception).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["BackgroundTasks"]

logger = logging.getLogger("shoal")


class BackgroundTasks:
    """The background tasks of one owner (a server, a client)."""

    __slots__ = ("_tasks", "_owner")

    def __init__(self, owner: str = ""):
        self._tasks: set[asyncio.Task] = set()
        self._owner = owner

    def spawn(self, coro: Any) -> asyncio.Task:
        """Run `coro` (or an awaitable) as a task this owner cancels and awaits on close."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                logger.error("background task of %s failed", self._owner or "shoal", exc_info=exc)

    def cancel(self) -> list[asyncio.Task]:
        """Cancel every task but the current one; return them (to await)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        return tasks

    async def close(self) -> None:
        """Cancel every task but the current one and wait until they have ended."""
        while True:
            tasks = self.cancel()
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self):
        return iter(list(self._tasks))
