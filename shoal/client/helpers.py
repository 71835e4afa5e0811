"""Module-level helpers over futures: `wait`, `as_completed`, `fire_and_forget`, `futures_of`."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures._base import DoneAndNotDoneFutures
from typing import Any

from dask.utils import parse_timedelta

from shoal.actor import BaseActorFuture
from shoal.client.futures import Future, FutureState
from shoal.client.walk import futures_of
from shoal.exceptions import FutureCancelledError, FuturesCancelledError
from shoal.protocol import messages as m

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


def _client_of(futures: list[Future]) -> Any:
    from shoal.client.client import default_client

    for f in futures:
        if f.client is not None:
            return f.client
    return default_client()


def wait(fs: Any, timeout: Any = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait until the futures are done (finished, erred or cancelled)."""
    numeric = isinstance(timeout, (int, float)) or (isinstance(timeout, str) and _is_timedelta(timeout))
    if timeout is not None and not numeric:
        raise TypeError(
            "timeout= keyword received a non-numeric value.\n"
            "Beware that wait expects a list of values\n"
            "  Bad:  wait(x, y, z)\n"
            "  Good: wait([x, y, z])"
        )
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise NotImplementedError("Only return_when='ALL_COMPLETED', 'FIRST_COMPLETED' and 'FIRST_EXCEPTION' are supported")
    futures = futures_of(fs)
    if not futures:
        return DoneAndNotDoneFutures(set(), set())
    client = _client_of(futures)
    if not client.asynchronous and all(f.done() for f in futures):
        return _wait_outcome(futures)  # known here: no hop (and it still answers once closed)
    return client.sync(_wait, futures, timeout=timeout, return_when=return_when)


def _is_timedelta(s: str) -> bool:
    try:
        parse_timedelta(s)
        return True
    except (ValueError, KeyError, TypeError):
        return False


async def _wait(futures: list[Future], timeout: Any = None, return_when: str = ALL_COMPLETED) -> Any:
    t = None if timeout is None else parse_timedelta(timeout, default="s")
    states = {f: f._state for f in futures}

    async def until() -> None:
        pending = [asyncio.ensure_future(st.wait()) for st in states.values() if st is not None and not st.done()]
        try:
            if return_when == ALL_COMPLETED:
                if pending:
                    await asyncio.gather(*pending)
            elif return_when == FIRST_COMPLETED:
                if pending and all(not st.done() for st in states.values() if st is not None):
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            else:  # FIRST_EXCEPTION
                while pending and not any(st is not None and st.status == "error" for st in states.values()):
                    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    pending = list(rest)
        finally:
            for p in pending:
                p.cancel()

    try:
        await asyncio.wait_for(until(), t)
    except asyncio.TimeoutError:
        raise TimeoutError(f"wait timed out after {timeout} s.") from None
    return _wait_outcome(futures)


def _wait_outcome(futures: list[Future]) -> DoneAndNotDoneFutures:
    """(done, not_done) now; `FuturesCancelledError` naming the cancelled ones."""
    done = {f for f in futures if f.done()}
    not_done = set(futures) - done
    cancelled = [f for f in done if f.status == "cancelled"]
    if cancelled:
        raise FuturesCancelledError(
            [FutureCancelledError(f.key, f._state.reason if f._state else None, f._state.msg if f._state else None) for f in cancelled]
        )
    return DoneAndNotDoneFutures(done, not_done)


def fire_and_forget(obj: Any) -> None:
    """Run these futures' tasks to completion even after every Future to them is dropped."""
    futures = futures_of(obj)
    by_client: dict[Any, list] = {}
    for f in futures:
        if f.client is not None:
            by_client.setdefault(f.client, []).append(f.key)
    for client, keys in by_client.items():
        client.outbox.send(m.DesireKeys(tuple(keys), "fire-and-forget"))


class as_completed:
    """Iterate over futures in the order they complete (sync `for` or `async for`)."""

    def __init__(
        self,
        futures: Any = None,
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: Any = None,
    ):
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + parse_timedelta(timeout, default="s")
        self._timeout = timeout
        self.condition = threading.Condition()
        self.queue: collections.deque = collections.deque()
        self.futures: collections.Counter = collections.Counter()
        self._async_event: asyncio.Event | None = None
        self._async_loop: Any = None
        if futures:
            self.update(futures)

    # -- feeding

    def update(self, futures: Any) -> None:
        for f in futures:
            if not isinstance(f, (Future, BaseActorFuture)):
                raise TypeError(f"Input must be a future, got {f}")
            self.add(f)

    def add(self, future: Future | BaseActorFuture) -> None:
        if isinstance(future, BaseActorFuture):  # an actor method call
            with self.condition:
                self.futures[future] += 1
            future._on_done(self._ready)
            return
        if not isinstance(future, Future):
            raise TypeError(f"Input must be a future, got {future}")
        client, st = future._verify_initialized()
        with self.condition:
            self.futures[future] += 1

        def on_done(_: FutureState) -> None:
            self._ready(future)

        def register() -> None:
            if st.done():
                self._ready(future)
            else:
                st.callbacks.append(on_done)

        client._call_in_loop(register)

    def _ready(self, future: Future) -> None:
        with self.condition:
            n = self.futures.get(future, 0)
            if n <= 0:
                return
            if n == 1:
                del self.futures[future]
            else:
                self.futures[future] = n - 1
            self.queue.append(future)
            self.condition.notify_all()
        if self._async_event is not None:
            ev, loop = self._async_event, self._async_loop
            try:
                if loop is asyncio.get_running_loop():
                    ev.set()
                else:
                    loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                loop.call_soon_threadsafe(ev.set)

    # -- state

    def count(self) -> int:
        with self.condition:
            return sum(self.futures.values()) + len(self.queue)

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        return bool(self.queue)

    def clear(self) -> None:
        with self.condition:
            self.futures.clear()
            self.queue.clear()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"<as_completed: waiting={sum(self.futures.values())} done={len(self.queue)}>"

    # -- results

    def _failed_item(self, future: Future) -> Any:
        """With results: the item for an erred future (or raise its error, with
        `raise_errors`) or a cancelled one (``(future, FutureCancelledError)``, never
        raised); None when the future finished normally."""
        if isinstance(future, BaseActorFuture):
            try:
                future.result()
                return None
            except Exception as exc:
                if self.raise_errors:
                    raise
                return future, (type(exc), exc, exc.__traceback__)
        st = future._state
        assert st is not None
        if st.status == "error":
            exc = st.exception()
            if self.raise_errors:
                assert exc is not None
                raise exc
            return future, (type(exc), exc, exc.__traceback__ if exc else None)
        if st.status == "cancelled":  # never raised, even with raise_errors (as distributed)
            return future, FutureCancelledError(future.key, st.reason, st.msg)
        return None

    def _pop(self) -> Any:
        future = self.queue.popleft()
        if not self.with_results:
            return future
        failed = self._failed_item(future)
        return failed if failed is not None else (future, future.result())

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def __iter__(self) -> as_completed:
        return self

    def __next__(self) -> Any:
        with self.condition:
            while not self.queue:
                if not self.futures:
                    raise StopIteration
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"as_completed timed out after {self._timeout} s.")
                self.condition.wait(remaining)
        if self.with_results:
            return self._pop()
        with self.condition:
            return self._pop()

    next = __next__

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        if self._async_event is None:
            self._async_event = asyncio.Event()
            self._async_loop = asyncio.get_running_loop()
        while not self.queue:
            if not self.futures:
                raise StopAsyncIteration
            self._async_event.clear()
            if self.queue:
                break
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"as_completed timed out after {self._timeout} s.")
            try:
                await asyncio.wait_for(self._async_event.wait(), remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"as_completed timed out after {self._timeout} s.") from None
        future = self.queue.popleft()
        if not self.with_results:
            return future
        failed = self._failed_item(future)
        return failed if failed is not None else (future, await future)

    def next_batch(self, block: bool = True) -> list:
        if block:
            batch = [next(self)]
        else:
            batch = []
        while self.queue:
            batch.append(self._pop())
        return batch

    def batches(self) -> Any:
        while True:
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return
