"""The helpers of `distributed.utils` that libraries import (`shoal.utils` re-exports
them lazily): small, self-contained, no shoal machinery behind them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import multiprocessing
import socket
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "All", "Deadline", "NoOpAwaitable", "ensure_memoryview", "format_dashboard_link", "get_ip", "get_mp_context",
    "has_arg", "import_term", "iscoroutinefunction", "key_split_group", "log_errors", "nbytes", "offload",
    "open_port", "parse_ports", "truncate_exception",
]  # fmt: skip


class NoOpAwaitable:
    """An awaitable that does nothing (what a blocking API returns when awaited)."""

    def __await__(self) -> Any:
        async def f() -> None:
            return None

        return f().__await__()


class Deadline:
    """A point in time `duration` seconds from now (None: never)."""

    def __init__(self, expires_at: float | None = None):
        self.started_at = time.monotonic()
        self.expires_at = expires_at

    @classmethod
    def after(cls, duration: float | None = None) -> Deadline:
        return cls(None if duration is None else time.monotonic() + duration)

    @property
    def duration(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - self.started_at

    @property
    def expires(self) -> bool:
        return self.expires_at is not None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def remaining(self) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at


@contextlib.contextmanager
def _log_errors_block(pdb: bool, unroll_stack: int) -> Iterator[None]:
    try:
        yield
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        logging.getLogger("shoal").exception("error")
        raise


def log_errors(func: Any = None, pdb: bool = False, unroll_stack: int = 1) -> Any:
    """Log (then re-raise) exceptions: as a decorator or `with log_errors():`."""
    if func is None:
        return _log_errors_block(pdb, unroll_stack)
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            with _log_errors_block(pdb, unroll_stack):
                return await func(*args, **kwargs)

        return awrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _log_errors_block(pdb, unroll_stack):
            return func(*args, **kwargs)

    return wrapper


def import_term(name: str) -> Any:
    """The object named by the dotted path `name` ("package.module.attribute")."""
    import importlib

    module_name, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def get_ip(host: str = "8.8.8.8", port: int = 80) -> str:
    """The address of the interface this machine uses to reach `host` (no packet sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def open_port(host: str = "") -> int:
    """A port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def format_dashboard_link(host: str, port: int) -> str:
    import dask

    template = dask.config.get("shoal.dashboard.link", "{scheme}://{host}:{port}/status")
    return template.format(scheme="http", host=host, port=port)


def has_arg(func: Any, argname: str) -> bool:
    try:
        return argname in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def iscoroutinefunction(f: Any) -> bool:
    return inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(getattr(f, "__call__", None))


def ensure_memoryview(obj: Any) -> memoryview:
    mv = memoryview(obj)
    return mv if mv.contiguous else memoryview(mv.tobytes())


def nbytes(frame: Any) -> int:
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    try:
        return frame.nbytes
    except AttributeError:
        return len(frame)


def parse_ports(port: Any) -> list[int | None]:
    """`8786`, `"8786"`, `"8000:8010"` or None as a list of ports to try."""
    if port is None:
        return [None]
    if isinstance(port, int):
        return [port]
    if isinstance(port, str) and ":" in port:
        low, high = (int(p) for p in port.split(":"))
        if high < low:
            raise ValueError(f"port range {port!r} ends before it starts")
        return list(range(low, high + 1))
    if isinstance(port, str):
        return [int(port)]
    return [int(p) for p in port]


def key_split_group(x: Any) -> str:
    """The group of a key: its name without the trailing token or index."""
    from dask.utils import key_split

    if isinstance(x, tuple):
        return x[0]
    return key_split(x)


def get_mp_context() -> Any:
    return multiprocessing.get_context("spawn")


def truncate_exception(e: BaseException, n: int = 10_000) -> BaseException:
    text = str(e)
    if len(text) > n:
        try:
            return type(e)("Long error message", text[:n])
        except Exception:  # noqa: BLE001
            return Exception("Long error message", type(e), text[:n])
    return e


async def offload(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `fn(*args, **kwargs)` in a thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


async def All(args: Any, quiet_exceptions: Any = ()) -> list:
    """Await every awaitable in `args`; their results in order (the first error raises)."""
    return list(await asyncio.gather(*args))
