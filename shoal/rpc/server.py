"""What every shoal server (scheduler, worker, nanny) shares: one life cycle.

A `Server` has a `status` (``created`` → ``running`` → ``closing`` → ``closed``),
request `handlers` (op → ``handler(peer, **kwargs)``), `extensions` hosted by name
(`add_extension`: their handlers join `handlers`; they start with the server and close
before it, in reverse order), and `background` tasks it owns (`spawn`: cancelled and
awaited when it closes). ``await server``, ``async with server`` and `finished()` work
the same on all of them. `start()` is shared (a failed start closes the server and raises
`RuntimeError`); subclasses implement `_start()` (returning the server) and `close()`, calling `start_extensions()` / `close_extensions()` /
`background.close()` / `closed()` at their points.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from shoal.background import BackgroundTasks
from shoal.status import StatusAttribute

__all__ = ["Extension", "Server"]

logger = logging.getLogger("shoal")


class Extension:
    """What a server hosts beside its state machine (the base of `SchedulerExtension` and
    `WorkerExtension`): request `handlers()`, `start()` with the server and `close()`
    before it (either may be async). Every hook is a no-op here."""

    def __init__(self, server: Any):
        self.server = server

    def handlers(self) -> dict[str, Any]:
        return {}

    def start(self) -> Any:
        return None

    def close(self) -> Any:
        return None


class Server:
    """The shared life cycle (see the module docstring). `kind` names the server in
    logs ("scheduler", "worker", "nanny")."""

    #: a `shoal.status.Status` (distributed's `distributed.core.Status`; equal to its text too)
    status = StatusAttribute()

    def __init__(self, kind: str):
        self.kind = kind
        self.status = "created"
        self.handlers: dict[str, Any] = {}
        #: extensions by name, in order of addition (`add_extension`)
        self.extensions: dict[str, Any] = {}
        #: background tasks the server owns (cancelled and awaited on close)
        self.background = BackgroundTasks(f"a {kind}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> Any:
        """Start and serve (`_start`, each server's own), returning the server; a no-op
        when running. A failure closes what started and raises ``RuntimeError("<Kind>
        failed to start: ...")`` chaining the cause, as in distributed."""
        if self.status == "running":
            return self
        try:
            return await self._start()
        except Exception as e:
            try:
                await self.close()
            except Exception:  # noqa: BLE001 - the start's failure is the one to report
                logger.debug("closing %s after a failed start", self.kind, exc_info=True)
            raise RuntimeError(f"{self.kind.capitalize()} failed to start: {e}") from e

    async def _start(self) -> Any:  # pragma: no cover - every server has its own
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - every server has its own
        raise NotImplementedError

    def __await__(self):
        return self.start().__await__()

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def finished(self) -> None:
        """Wait until the server has closed."""
        await self._closed.wait()

    def closed(self) -> None:
        """Mark the server closed (the end of `close`): `finished()` returns."""
        self.status = "closed"
        self._closed.set()

    def spawn(self, coro: Any) -> asyncio.Task:
        """Run `coro` as a background task the server owns (ended when it closes)."""
        return self.background.spawn(coro)

    # ------------------------------------------------------------------ extensions

    def add_extension(self, name: str, extension: Any) -> Any:
        """Host `extension` under `name`: register its request handlers (`handlers()`,
        a clash with an existing op is a `ValueError`), start it with the server (at once
        if the server runs; from any thread) and close it with the server. Returns it."""
        if name in self.extensions:
            raise ValueError(f"a {self.kind} extension named {name!r} already exists")
        handlers = extension.handlers() if hasattr(extension, "handlers") else {}
        taken = [op for op in handlers if op in self.handlers]
        if taken:
            raise ValueError(f"{self.kind} extension {name!r}: operations {taken} already have a handler")
        self.handlers.update(handlers)
        self.extensions[name] = extension
        if self.status == "running" and self.loop is not None:
            try:
                here = asyncio.get_running_loop() is self.loop
            except RuntimeError:
                here = False
            if here:
                self.spawn(self._start_extension(name, extension))
            else:
                self.loop.call_soon_threadsafe(lambda: self.spawn(self._start_extension(name, extension)))
        return extension

    async def _start_extension(self, name: str, extension: Any) -> None:
        start = getattr(extension, "start", None)
        if start is None:
            return
        try:
            result = start()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s extension %r failed to start", self.kind, name)
            raise

    async def start_extensions(self) -> None:
        """Start every extension, in order of addition (a failure fails the start)."""
        for name, extension in list(self.extensions.items()):
            await self._start_extension(name, extension)

    async def close_extensions(self) -> None:
        """Close every extension, newest first; a failure is logged and the rest close."""
        for name, extension in reversed(list(self.extensions.items())):
            close = getattr(extension, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s extension %r failed to close", self.kind, name)
