"""The bridge between blocking user code and shoal's event loop.

Blocking `Client`s and `LocalCluster`s share one event loop running in a daemon thread
("shoal-loop"), started on first use (uvloop where available). `sync` runs a coroutine
function on a loop and blocks the calling thread for its result. `wait_exit` awaits a
child process's exit without a thread.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop()


async def wait_exit(proc: subprocess.Popen, timeout: float | None = None) -> int | None:
    """Await the exit of child process `proc` for up to `timeout` s (None: for ever);
    its return code, or None if it is still running. On Linux the loop watches a pidfd
    (no thread, no polling); elsewhere it polls every 20 ms. Not
    `run_in_executor(proc.wait)`: that parks a thread of the shared default executor per
    waiting process, which outlives the wait."""
    if proc.poll() is not None:
        return proc.returncode
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the pid is gone already
        fd = None
    if fd is not None:
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    while proc.poll() is None and (deadline is None or time.monotonic() < deadline):
        await asyncio.sleep(0.02)  # the fallback, and the instant between pidfd and reaping
    return proc.returncode


def shared_loop() -> asyncio.AbstractEventLoop:
    """The process-wide loop thread used by blocking clients and clusters."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread or not _thread.is_alive():
            loop = new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="shoal-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Handoff:
    """Items handed from other threads to an event loop and drained there in batches: the
    first `put` of a batch schedules one `drain(items)` call on `loop` (a deque it pops
    from), later ones only append, so a burst costs one loop wake-up. The worker's task
    completions and actor results use it. Set `loop` before the first `put`."""

    __slots__ = ("loop", "items", "_drain", "_pending")

    def __init__(self, drain: Callable[[collections.deque], None], loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop
        self.items: collections.deque = collections.deque()
        self._drain = drain
        self._pending = False

    def put(self, item: Any) -> bool:
        """Hand `item` over, from any thread; False when the loop is closed (its owner is
        going away)."""
        self.items.append(item)
        if not self._pending:
            self._pending = True
            try:
                self.loop.call_soon_threadsafe(self._run)  # type: ignore[union-attr]
            except RuntimeError:
                return False
        return True

    def _run(self) -> None:
        self._pending = False
        self._drain(self.items)


def unwrap(loop: Any) -> Any:
    """The asyncio loop behind `loop` (a `LoopWrapper`, a tornado IOLoop, or itself)."""
    return getattr(loop, "asyncio_loop", loop)


class LoopWrapper:
    """`Client.loop`: the client's asyncio loop with the methods of the loop object
    distributed exposes there (tornado's IOLoop), so code that schedules work on
    `client.loop` keeps working: `add_callback` (from any thread; a coroutine function's
    coroutine is run as a task), `call_later` / `call_at` / `remove_timeout`, `time`,
    `spawn_callback`, `add_future`, `run_sync`, and `asyncio_loop`. Everything else is
    the asyncio loop's own (`call_soon_threadsafe`, `create_task`, `is_running`, ...)."""

    __slots__ = ("asyncio_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.asyncio_loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.asyncio_loop, name)

    def __eq__(self, other: object) -> bool:
        return unwrap(other) is self.asyncio_loop

    def __hash__(self) -> int:
        return hash(self.asyncio_loop)

    def __repr__(self) -> str:
        return f"<LoopWrapper {self.asyncio_loop!r}>"

    def _run(self, callback: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        result = callback(*args, **kwargs)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            asyncio.ensure_future(result)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if in_loop_thread(self.asyncio_loop):
            self.asyncio_loop.call_soon(fn, *args)
        else:
            self.asyncio_loop.call_soon_threadsafe(fn, *args)

    def add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call `callback(*args, **kwargs)` on the loop soon; safe from any thread."""
        self._soon(self._run, callback, args, kwargs)

    spawn_callback = add_callback

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `callback` after `delay` seconds; returns a handle for `remove_timeout`."""
        return self.call_at(self.time() + delay, callback, *args, **kwargs)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if in_loop_thread(self.asyncio_loop):
            return self.asyncio_loop.call_at(when, self._run, callback, args, kwargs)
        handle = _DeferredHandle()
        self.asyncio_loop.call_soon_threadsafe(handle.start, self.asyncio_loop, when, self._run, callback, args, kwargs)
        return handle

    def remove_timeout(self, handle: Any) -> None:
        self._soon(handle.cancel)

    def time(self) -> float:
        return self.asyncio_loop.time()

    def add_future(self, future: Any, callback: Callable[[Any], Any]) -> None:
        """Call `callback(future)` on the loop once `future` (asyncio or concurrent) is done."""
        fut = asyncio.wrap_future(future, loop=self.asyncio_loop) if not isinstance(future, asyncio.Future) else future
        fut.add_done_callback(lambda _: self.add_callback(callback, future))

    def run_sync(self, func: Callable[..., Any], timeout: float | None = None) -> Any:
        """Run coroutine function `func` on the loop from another thread; its result."""

        async def call() -> Any:
            result = func()
            return await result if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future) else result

        return sync(self.asyncio_loop, call, callback_timeout=timeout)


class _DeferredHandle:
    """A `call_at` handle made off the loop thread: cancellable before the timer exists."""

    __slots__ = ("handle", "cancelled")

    def __init__(self) -> None:
        self.handle: Any = None
        self.cancelled = False

    def start(self, loop: asyncio.AbstractEventLoop, when: float, *args: Any) -> None:
        if not self.cancelled:
            self.handle = loop.call_at(when, *args)

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()


def in_async_call(loop: asyncio.AbstractEventLoop | None, default: bool = False) -> bool:
    """Whether an object bound to `loop` should hand back awaitables to this caller.

    The rule (as in distributed): awaitables on `loop`'s own thread; a blocking call from
    any other thread while `loop` runs (a task thread of an in-process cluster, a
    `ThreadPoolExecutor` thread, another event loop); and, when `loop` is not running
    (or not known yet), what the object was created as (`default`, its `asynchronous=`)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is loop:
        return True
    if loop is None or loop.is_closed() or not loop.is_running():
        return default
    return False


def sync(
    loop: asyncio.AbstractEventLoop,
    func: Callable[..., Any],
    *args: Any,
    callback_timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """Run `func(*args, **kwargs)` (a coroutine function) on `loop`; block for the result.

    This is the hop every blocking call makes, so it is kept to one thread-safe wake-up
    of the loop and one lock hand-off back (no `concurrent.futures.Future`)."""
    if in_loop_thread(loop):
        raise RuntimeError("sync() called from thread of running loop")
    if loop.is_closed():
        raise RuntimeError("the event loop is closed")
    done = threading.Lock()
    done.acquire()
    box: list[Any] = []  # [task] once started

    def start() -> None:
        try:
            task = loop.create_task(func(*args, **kwargs))
        except BaseException as e:  # func raised before returning a coroutine
            box.append(e)
            done.release()
            return
        box.append(task)
        task.add_done_callback(lambda _: done.release())

    loop.call_soon_threadsafe(start)
    try:
        if not done.acquire(timeout=-1 if callback_timeout is None else max(callback_timeout, 0)):
            raise TimeoutError(f"operation did not finish within {callback_timeout} s")
    except BaseException:  # timeout or KeyboardInterrupt: stop the work on the loop
        loop.call_soon_threadsafe(lambda: box and isinstance(box[0], asyncio.Task) and box[0].cancel())
        raise
    outcome = box[0]
    if not isinstance(outcome, asyncio.Task):
        raise outcome
    return outcome.result()


def run_process(main: Callable[[], Any], log_level: str = "WARNING") -> None:
    """Entry point of a shoal process (`python -m shoal.worker`, `python -m
    shoal.scheduler`): log to stderr, run coroutine function `main` on a fresh loop,
    with the process's garbage-collector policy (`shoal._gc`)."""
    import logging
    import sys

    from shoal import config
    from shoal._gc import freeze_survivors

    freeze_survivors()
    logging.basicConfig(level=log_level, stream=sys.stderr, format=str(config.get("admin.log-format")))
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
