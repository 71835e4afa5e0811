"""`Future`, the user's handle on a remote result, and `FutureState`, shared by every
Future of one key in one client.

A `FutureState` is changed only on the client's event-loop thread (by messages from the
scheduler, or by `cancel`); waiting on it from the loop uses an `asyncio.Event`. Each
`Future` object holds one reference on its key; when the last is released the client
tells the scheduler it no longer wants the key.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from dask._task_spec import TaskRef

from shoal.client.remote_errors import mark_remote, remote_traceback
from shoal.exceptions import FutureCancelledError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, loads

if TYPE_CHECKING:
    from shoal.client.client import Client

_DONE = frozenset(["finished", "error", "cancelled"])


class FutureState:
    """What the client knows about one key."""

    __slots__ = (
        "key", "status", "type_name", "workers", "inline", "_exception", "_exc_obj",
        "_traceback", "text", "reason", "msg", "_event", "callbacks", "_watchers",
    )  # fmt: skip

    def __init__(self, key: Any):
        self.key = key
        self.status = "pending"
        self.type_name: str | None = None
        self.workers: tuple = ()
        self.inline: Pickled | None = None
        self._exception: Pickled | None = None
        self._exc_obj: BaseException | None = None
        self._traceback: Any = None
        self.text = ""
        self.reason: str | None = None
        self.msg: str | None = None
        self._event: asyncio.Event | None = None
        self.callbacks: list[Callable[[FutureState], None]] = []
        #: loop futures waiting for the next transition of any kind (`changed`)
        self._watchers: list[asyncio.Future] | None = None

    def done(self) -> bool:
        return self.status in _DONE

    async def wait(self) -> None:
        while not self.done():
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()

    async def changed(self) -> None:
        """Wait for this key's next transition, whatever it is (lost, pending, finished...)."""
        fut = asyncio.get_running_loop().create_future()
        if self._watchers is None:
            self._watchers = []
        self._watchers.append(fut)
        try:
            await fut
        finally:
            if self._watchers and fut in self._watchers:  # cancelled or timed out
                self._watchers.remove(fut)

    def _changed(self) -> None:
        watchers, self._watchers = self._watchers, None
        for fut in watchers or ():
            if not fut.done():
                fut.set_result(None)
        if self.done():
            if self._event is not None:
                self._event.set()
            callbacks, self.callbacks = self.callbacks, []
            for cb in callbacks:
                cb(self)
        elif self._event is not None:
            self._event.clear()

    # transitions driven by scheduler messages

    def finish(self, type_name: str | None, workers: tuple, inline: Pickled | None) -> None:
        self.status = "finished"
        if type_name:
            self.type_name = type_name
        self.workers = workers
        self.inline = inline
        self._changed()

    def set_error(self, exception: Pickled, traceback: Any, text: str) -> None:
        self.status = "error"
        self._exception, self._exc_obj, self._traceback, self.text = exception, None, traceback, text
        self.inline = None
        self._changed()

    def cancel(self, reason: str | None = None, msg: str | None = None) -> None:
        self.status = "cancelled"
        self.reason, self.msg = reason or "unknown", msg
        self.inline = None
        self._changed()

    def moved(self, workers: tuple) -> None:
        """The result now lives (only) on `workers`: a holder was lost."""
        if self.status == "finished":
            self.workers = workers
            self._changed()

    def lost(self) -> None:
        self.status = "lost"
        self.inline, self.workers = None, ()
        self._changed()

    def retry(self) -> None:
        self.status = "pending"
        self._exception = self._exc_obj = self._traceback = None
        self._changed()

    # reading

    def exception(self) -> BaseException | None:
        if self.status == "cancelled":
            return FutureCancelledError(self.key, self.reason, self.msg)
        if self.status != "error" or self._exception is None:
            return None
        if self._exc_obj is None:
            try:
                exc = loads(self._exception)
            except Exception as e:
                exc = RuntimeError(f"{self.text} (the exception type could not be loaded here: {e})")
            if not isinstance(exc, BaseException):
                exc = RuntimeError(str(exc))
            mark_remote(exc, self._traceback)
            self._exc_obj = exc
        # the task's own frames, afresh: the caller's frames a previous raise added go, and
        # so does the exception a previous raise happened to be handling
        exc = self._exc_obj
        exc.__context__ = None
        return exc.with_traceback(remote_traceback(exc))

    def traceback(self) -> Any:
        """The task's frames (as `shoal.admin.traceback.shorten` leaves them)."""
        exc = self.exception() if self.status == "error" else None
        return exc.__traceback__ if exc is not None else None

    def result_type(self) -> type | None:
        name = self.type_name
        if not name or self.status != "finished":
            return None
        if "." not in name:
            return getattr(builtins, name, None)
        mod, _, attr = name.rpartition(".")
        try:
            obj: Any = importlib.import_module(mod)
        except ImportError:
            return None
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None

    def raise_if_failed(self) -> None:
        if self.status == "error":
            __tracebackhide__ = True  # noqa: F841 - pytest (and IPython's debugger) leave this frame out
            exc = self.exception()
            assert exc is not None
            raise exc  # with the task's frames only
        if self.status == "cancelled":
            raise FutureCancelledError(self.key, self.reason, self.msg)


_callback_executor: ThreadPoolExecutor | None = None
_callback_lock = threading.Lock()


def _run_callback(fn: Callable[[Future], Any], future: Future) -> None:
    global _callback_executor
    with _callback_lock:
        if _callback_executor is None:
            _callback_executor = ThreadPoolExecutor(1, thread_name_prefix="Dask-Callback-Thread")

    def call() -> None:
        try:
            fn(future)
        except BaseException:
            import logging

            logging.getLogger("shoal.client").exception("error in future done callback %s", fn)

    _callback_executor.submit(call)


def _client_for_unpickled() -> Client | None:
    """The client an unpickled `Future` binds to: the task's client inside a task (its
    thread may block to make one), else the current or default client, else none."""
    from shoal._context import in_task

    try:
        if in_task():
            from shoal.worker_client import get_client

            return get_client()
        from shoal.client.client import Client

        client = Client.current(allow_global=True)
    except ValueError:
        return None
    return client if client.status == "running" else None


def _rebuild_future(key: Any) -> Future:
    """A pickled `Future` (inside a persisted collection's graph, an object, a queue
    item) comes back bound to `_client_for_unpickled()`, which tells the scheduler it
    wants the key, as in distributed; with no client around it stays unbound."""
    client = _client_for_unpickled()
    future = Future(key, client)
    if client is not None:
        try:
            client.outbox.send(m.DesireKeys((key,), client.id))
        except Exception:  # closed meanwhile: an unbound-like future that never resolves
            pass
    return future


class Future(TaskRef):
    """A remotely running computation. Users get Futures from `Client.submit` and friends."""

    __slots__ = ("client", "_state", "_id", "_released", "__weakref__")
    _counter = itertools.count()

    def __init__(self, key: Any, client: Client | None = None, state: FutureState | None = None, _id: Any = None):
        self.key = key
        self._id = _id if _id is not None else next(Future._counter)
        self.client: Client | None = None
        self._state: FutureState | None = None
        self._released = False
        if client is not None:
            self.bind_client(client)

    def bind_client(self, client: Client) -> None:
        self.client = client
        self._state = client._inc_ref(self.key)

    @property
    def executor(self) -> Client | None:
        return self.client

    def _verify_initialized(self) -> tuple[Client, FutureState]:
        if self.client is None or self._state is None:
            raise RuntimeError(
                f"Future for key {self.key!r} is not properly initialized. This can happen if a "
                "Future is unpickled outside a client or task; call bind_client first."
            )
        return self.client, self._state

    @property
    def status(self) -> str | None:
        return self._state.status if self._state is not None else None

    def done(self) -> bool:
        return self._state is not None and self._state.done()

    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def type(self) -> type | None:
        return self._state.result_type() if self._state is not None else None

    def result(self, timeout: Any = None) -> Any:
        """Wait for the result; re-raise the task's exception; `TimeoutError` on timeout."""
        client, st = self._verify_initialized()
        # what is known here needs no hop to the loop (and still answers once the client
        # closed, e.g. because the scheduler went away: the cancellation's reason)
        if not client.asynchronous:
            if st.status == "finished" and st.inline is not None:
                return client._loaded(st.inline)
            if st.status == "cancelled":
                st.raise_if_failed()
        try:
            if st.status == "error" and not client.asynchronous:
                st.raise_if_failed()
            return client.sync(client._result, self, timeout)
        except BaseException as e:
            tb = remote_traceback(e)
            if tb is None:
                raise
            __tracebackhide__ = True  # noqa: F841 - pytest (and IPython's debugger) leave this frame out
            raise e.with_traceback(tb)  # the caller's line, then the task's frames

    def exception(self, timeout: Any = None, **kwargs: Any) -> Any:
        client, st = self._verify_initialized()
        if st.done() and not client.asynchronous:
            return st.exception() if st.status == "error" else None
        return client.sync(client._future_exception, self, timeout)

    def traceback(self, timeout: Any = None, **kwargs: Any) -> Any:
        client, st = self._verify_initialized()
        if st.done() and not client.asynchronous:
            return st.traceback()
        return client.sync(client._future_traceback, self, timeout)

    def cancel(self, reason: str | None = None, msg: str | None = None, **kwargs: Any) -> Any:
        client, _ = self._verify_initialized()
        return client.cancel([self], reason=reason, msg=msg, **kwargs)

    def retry(self, **kwargs: Any) -> Any:
        client, _ = self._verify_initialized()
        return client.retry([self], **kwargs)

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call `fn(future)` once the future is no longer pending, in a callback thread."""
        client, st = self._verify_initialized()

        def on_done(_: FutureState) -> None:
            _run_callback(fn, self)

        def register() -> None:
            if st.done():
                on_done(st)
            else:
                st.callbacks.append(on_done)

        client._call_in_loop(register)

    def release(self) -> None:
        if not self._released and self.client is not None and self._state is not None:
            self._released = True
            self.client._dec_ref(self.key, self._state)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown, closed loop: nothing left to tell
            pass

    def __await__(self):
        client, _ = self._verify_initialized()
        return client._result(self, None).__await__()

    def __reduce__(self):  # type: ignore[override]
        return _rebuild_future, (self.key,)

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.key, self._id)

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        st = self._state
        if st is None:
            return f"<Future: unbound, key: {self.key}>"
        if st.status == "finished" and st.type_name:
            return f"<Future: finished, type: {st.type_name}, key: {self.key}>"
        return f"<Future: {st.status}, key: {self.key}>"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import future_html

        return future_html(self, self._state)
