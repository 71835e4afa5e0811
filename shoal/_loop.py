"""The bridge between blocking user code and shoal's event loop.

Blocking `Client`s and `LocalCluster`s share one event loop running in a daemon thread
("shoal-loop"), started on first use (uvloop where available). `sync` runs a coroutine
function on a loop and blocks the calling thread for its result.
"""

from __future__ import annotations

import asyncio
import threading
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
