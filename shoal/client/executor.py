"""`ClientExecutor`: a `concurrent.futures.Executor` running on a shoal cluster.

`Client.get_executor(**kwargs)` returns one. Its futures are plain
`concurrent.futures.Future`s (so `concurrent.futures.wait` / `as_completed` work), each
mirroring one cluster `Future` (its `dask_future` attribute) that it keeps alive;
cancelling the standard future cancels the cluster one. `kwargs` are the `submit` options distributed's
ClientExecutor accepts (`workers`, `retries`, `resources`, `allow_other_workers`, `pure`);
as there, `pure` defaults to the client's default (True: identical calls share one
result; pass `pure=False` for calls with side effects).

It is a blocking API: with an asynchronous client, await its futures with
`asyncio.wrap_future` rather than calling `result()` or iterating `map` on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from shoal.utils import parse_timeout

if TYPE_CHECKING:
    from shoal.client.client import Client
    from shoal.client.futures import Future

ALLOWED_KWARGS = frozenset(["pure", "workers", "resources", "allow_other_workers", "retries"])


def _mirror(client: Client, future: Future) -> cf.Future:
    """A standard future that completes when `future` does (its result fetched on the
    client's loop, so this works for blocking and asynchronous clients alike)."""
    cf_future: cf.Future = cf.Future()
    # the cluster future (and so its key) lives as long as the standard future, as in distributed
    cf_future.dask_future = future  # type: ignore[attr-defined]

    def copy(f: Future) -> None:
        if cf_future.done():
            return
        try:
            st = f.status
            if st == "finished":
                value = asyncio.run_coroutine_threadsafe(client._result(f), client._aloop).result()
                cf_future.set_result(value)
            elif st == "cancelled":
                cf_future.cancel()
            else:
                state = f._state
                assert state is not None
                cf_future.set_exception(state.exception())
        except BaseException as e:  # noqa: BLE001 - whatever fetching raised is the outcome
            if not cf_future.done():
                cf_future.set_exception(e)

    def cancel_cluster_future(cf_f: cf.Future) -> None:
        if cf_f.cancelled():
            # no thread will ever "start" it: tell `wait`/`as_completed` it is over
            cf_f.set_running_or_notify_cancel()
            if not future.done():
                future.cancel()

    cf_future.add_done_callback(cancel_cluster_future)
    future.add_done_callback(copy)
    return cf_future


class ClientExecutor(cf.Executor):
    """Submits to `client` with fixed submit options (see the module docstring)."""

    def __init__(self, client: Client, **kwargs: Any):
        bad = set(kwargs) - ALLOWED_KWARGS
        if bad:
            raise TypeError(f"unsupported arguments to ClientExecutor: {sorted(bad)}")
        self._client = client
        self._kwargs = kwargs
        self._futures: weakref.WeakSet[cf.Future] = weakref.WeakSet()
        self._shutdown = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _wrap(self, future: Future) -> cf.Future:
        cf_future = _mirror(self._client, future)
        with self._lock:
            self._futures.add(cf_future)
        return cf_future

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run `fn(*args, **kwargs)` on the cluster; a standard future of its result."""
        self._check()
        future = self._client.submit(fn, *args, **{**self._kwargs, **kwargs})
        return self._wrap(future)

    def map(
        self, fn: Callable, *iterables: Iterable, timeout: Any = None, chunksize: int = 1
    ) -> Iterator:
        """Like `Executor.map`: an iterator of results in input order. `timeout` (seconds
        or a string like "5s") counts from this call (`TimeoutError` when a result is
        not ready by then); with `chunksize > 1`, each task runs `fn` over a chunk of
        that many inputs. All tasks are submitted before the first result is asked for;
        closing the iterator early cancels those not done."""
        self._check()
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        timeout = parse_timeout(timeout)
        end_time = None if timeout is None else timeout + time.monotonic()
        calls = list(zip(*iterables))
        kwargs = dict(self._kwargs)
        if not calls:
            futures: list = []
        elif chunksize == 1:
            futures = self._client.map(fn, *map(list, zip(*calls)), **kwargs)
        else:
            chunks = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
            futures = self._client.map(_run_chunk, [fn] * len(chunks), chunks, **kwargs)
        cf_futures = [self._wrap(f) for f in futures]

        def results() -> Iterator:
            try:
                for cf_future in cf_futures:
                    remaining = None if end_time is None else max(end_time - time.monotonic(), 0)
                    try:
                        value = cf_future.result(remaining)
                    except cf.TimeoutError:
                        raise TimeoutError(f"map results not ready within {timeout} s") from None
                    if chunksize == 1:
                        yield value
                    else:
                        yield from value
            finally:
                for cf_future in cf_futures:
                    cf_future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new submissions; with `wait`, block until every submitted future is done
        (else, or with `cancel_futures`, cancel those not done yet)."""
        self._shutdown = True
        with self._lock:
            pending = [f for f in self._futures if not f.done()]
        if wait and not cancel_futures:
            cf.wait(pending)
        else:
            for f in pending:
                f.cancel()


def _run_chunk(fn: Callable, chunk: list) -> list:
    return [fn(*args) for args in chunk]


__all__ = ["ClientExecutor"]
