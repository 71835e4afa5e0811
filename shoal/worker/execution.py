"""The worker's execution: a pool of `nthreads` threads runs the `Execute` instructions of
the state machine; finished executions are collected in a deque and fed back in batches
(one loop wake-up per batch, not per task). Also `secede` / `rejoin` (a task giving its
thread's slot back and taking one again), the cache of unpickled task functions, and how
a task's exception travels (`pack_exception`). A mixin of `shoal.worker.server.Worker`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import threading
import time
import traceback as tb_module
from threading import get_ident
from typing import TYPE_CHECKING, Any

from shoal import config
from shoal._context import task_state
from shoal.exceptions import Reschedule
from shoal.graph.spec import run_task
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.protocol.tracebacks import capped, frames_of, truncate
from shoal.utils import typename
from shoal.worker.sizeof import sizeof
from shoal.worker.state import Execute, ExecuteFailure, ExecuteSuccess, RescheduleEvent, SecedeEvent

if TYPE_CHECKING:
    from shoal.worker.server import Worker

#: per-thread: the worker, key and run id of the task a thread runs (`shoal._context`)
thread_state = task_state

#: put in the work queue by `rejoin`: the pool thread that takes it hands over its place
_REJOIN = object()


def get_worker() -> Worker:
    """The worker running the current task."""
    try:
        return thread_state.worker
    except AttributeError:
        raise ValueError("No worker found") from None


class FunctionCache:
    """Unpickled task functions, keyed by their pickled bytes (many tasks share one)."""

    def __init__(self, size: int = 512):
        self.size = size
        self.cache: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
        self.lock = threading.Lock()

    def load(self, p: Pickled) -> Any:
        if p.buffers:
            return loads(p)
        raw = bytes(p.header)
        with self.lock:
            func = self.cache.get(raw)
            if func is not None:
                self.cache.move_to_end(raw)
                return func
        func = loads(p)
        with self.lock:
            self.cache[raw] = func
            if len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return func

    def clear(self) -> None:
        with self.lock:
            self.cache.clear()


class Execution:
    """The thread pool side of `Worker` (see the module docstring)."""

    def get_current_task(self) -> Any:
        """The key of the task running in this thread (distributed's `Worker.get_current_task`);
        with `state.tasks[key].metadata` a task attaches values to its task-stream record."""
        key = getattr(task_state, "key", None)
        if key is None:
            raise RuntimeError("get_current_task() is called from a task only")
        return key

    def _start_pool_thread(self) -> None:
        t = threading.Thread(target=self._work, name=f"shoal-task-{len(self._threads)}", daemon=True)
        self._threads = [th for th in self._threads if th.is_alive()]
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        thread_state.worker = self
        thread_state.seceded = False
        get = self._queue.get
        put = self.completions.put
        while True:
            inst = get()
            if inst is None:
                return
            if inst is _REJOIN:
                if self._rejoin_waiters:
                    self._rejoin_waiters.popleft().set()
                    return  # the rejoining thread takes this thread's place in the pool
                continue
            if not put(self._execute(inst)):
                return  # the loop is closed: the worker is going away
            if thread_state.seceded:
                return  # this thread left the pool; its replacement serves the queue

    def secede(self) -> None:
        """Called from a task: give this thread's pool slot back (the task keeps running)."""
        if getattr(thread_state, "worker", None) is not self or thread_state.seceded:
            return
        key, run_id = getattr(thread_state, "key", None), getattr(thread_state, "run_id", None)
        if key is None:
            raise ValueError("secede() must be called from inside a task")
        thread_state.seceded = True
        self._start_pool_thread()
        event = SecedeEvent(f"secede-{next(self._sid)}", key, run_id)
        self.loop.call_soon_threadsafe(self._handle_if_running, [event])  # type: ignore[union-attr]

    def rejoin(self) -> None:
        """Called from a seceded task: wait for a pool thread to free up, take its place."""
        if getattr(thread_state, "worker", None) is not self or not thread_state.seceded:
            return
        ready = threading.Event()
        self._rejoin_waiters.append(ready)
        self._queue.put(_REJOIN)
        ready.wait()
        thread_state.seceded = False

    def _handle_if_running(self, events: list[Any]) -> None:
        if self.status == "running":
            self._handle(events)

    def _drain_done(self, done: collections.deque) -> None:
        """The loop's side of `completions`: one stimulus for the batch."""
        events = []
        sid = f"execute-{next(self._sid)}"  # one stimulus id per batch of completions
        while done:
            ev = done.popleft()
            ev.stimulus_id = sid
            events.append(ev)
        if events and self.status == "running":
            self._handle(events)

    def _execute(self, inst: Execute) -> Any:
        sid = "execute"
        thread_state.key = inst.key
        thread_state.run_id = inst.run_id
        ident = threading.get_ident()
        self._running[ident] = inst.key
        start = time.time()
        try:
            data = self.store
            try:
                deps = {d: data[d] for d in inst.deps}  # a spilled one is read back here
            except KeyError:  # freed meanwhile: the scheduler places the task again
                return RescheduleEvent(sid, inst.key, inst.run_id)
            result = run_task(inst.key, inst.func, inst.spec, deps, self._functions.load)
            if inspect.isawaitable(result):
                result = asyncio.run_coroutine_threadsafe(as_coroutine(result), self.loop).result()  # type: ignore[arg-type]
            stop = time.time()
            if inst.actor:
                return self._actor_created(inst, result, start, stop)
            nbytes = sizeof(result)
            inline = None
            if inst.send_inline and nbytes <= self.inline_limit:
                try:
                    p = dumps(result)
                    if p.nbytes <= self.inline_limit and not p.buffers:
                        inline = p
                except Exception:
                    inline = None
            return ExecuteSuccess(
                sid, inst.key, inst.run_id, result, nbytes, typename(type(result)), start, stop, inline, thread=get_ident()
            )
        except Reschedule:
            return RescheduleEvent(sid, inst.key, inst.run_id)
        except BaseException as e:  # noqa: BLE001 - any failure of user code is the task's result
            stop = time.time()
            return ExecuteFailure(sid, inst.key, inst.run_id, *pack_exception(e), start, stop, get_ident())
        finally:
            thread_state.key = None
            self._running.pop(ident, None)

    def clear_function_cache(self) -> None:
        """Forget unpickled task functions (after `upload_file` reloaded their module)."""
        self._functions.clear()


#: the code of the frame every task runs under: the profiler's samples stop there
TASK_FRAME_CODE = Execution._execute.__code__


async def as_coroutine(aw: Any) -> Any:
    """`aw` (any awaitable) as a coroutine, for `run_coroutine_threadsafe` and tasks."""
    return await aw


def pack_exception(e: BaseException) -> tuple:
    """(pickled exception, traceback frames, text), robust to exceptions that do not pickle.
    All frames travel (at most `MAX_FRAMES`): the client leaves out shoal's own as its
    `shoal.admin.traceback.shorten` says; a message longer than
    `shoal.admin.max-error-length` is cut."""
    frames = capped(frames_of(e.__traceback__))
    e = truncate(e, int(config.get("admin.max-error-length") or 0))
    text = "".join(tb_module.format_exception_only(type(e), e)).strip()
    try:
        p = dumps(e)
        loads(p)  # some exceptions pickle but cannot be rebuilt; find out here, not on the client
    except Exception:
        p = dumps(RuntimeError(f"{text} (the original exception could not be serialized)"))
    return p, frames, text
