"""The worker's I/O shell: runs what the `WorkerState` machine decides.

- `compute-task` / `free-keys` from the scheduler become events;
- `Execute` instructions go to a pool of `nthreads` threads; finished executions are
  collected in a deque and fed back in batches (one loop wake-up per batch, not per task);
- `Gather` instructions fetch many keys from one peer in one request;
- `SendToScheduler` messages go on the scheduler connection, coalesced per loop tick.
It also serves `get_data` to peers and clients, accepts `update_data` (scatter) and runs
functions sent with `Client.run`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import traceback as tb_module
import uuid
from typing import Any

from dask.sizeof import sizeof

from shoal import config
from shoal._context import task_state
from shoal.comm import connect, listen
from shoal.comm.addressing import parse_address
from shoal.exceptions import Reschedule
from shoal.graph.spec import run_task
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.protocol.tracebacks import frames_of
from shoal.rpc import ConnectionPool, Peer
from shoal.utils import typename
from shoal.versions import get_versions
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteFailure,
    ExecuteSuccess,
    FreeKeysEvent,
    Gather,
    GatherDone,
    RescheduleEvent,
    SecedeEvent,
    SendToScheduler,
    StealRequestEvent,
    UpdateDataEvent,
    WorkerState,
)

logger = logging.getLogger("shoal.worker")

#: frames of these modules are dropped from the front of remote tracebacks
_OWN_FRAMES = (os.sep + os.path.join("shoal", "worker") + os.sep, os.path.join("dask", "_task_spec"))

_thread_state = task_state

#: put in the work queue by `rejoin`: the pool thread that takes it hands over its place
_REJOIN = object()


def get_worker() -> Worker:
    """The worker running the current task."""
    try:
        return _thread_state.worker
    except AttributeError:
        raise ValueError("No worker found") from None


class _FunctionCache:
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


class Worker:
    """A worker server. `await Worker(scheduler_address, ...)` starts it."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: Any = None,
        memory_limit: int = 0,
        resources: dict | None = None,
        secret: bytes | None = None,
        host: str = "127.0.0.1",
        local_directory: str | None = None,
        nanny: str | None = None,
        validate: bool | None = None,
        death_timeout: float | None = None,
    ):
        self.scheduler_address = scheduler_address
        self.nthreads = int(nthreads)
        self.memory_limit = int(memory_limit or 0)
        self.resources = dict(resources if resources is not None else config.get("worker.resources") or {})
        self.secret = secret
        self.host = host
        self.id = f"Worker-{uuid.uuid4()}"
        self.name = name if name is not None else self.id
        self.nanny = nanny
        self._own_directory = local_directory is None
        self.local_directory = local_directory or tempfile.mkdtemp(prefix="shoal-worker-")
        self.validate = bool(config.get("worker.validate")) if validate is None else validate
        self.inline_limit = config.get_bytes("client.inline-result-size")
        self.connect_timeout = config.get_timedelta("comm.timeouts.connect")
        #: how long to keep trying to reach the scheduler at start (default: connect timeout)
        self.death_timeout = death_timeout
        self.status = "created"
        self.state: WorkerState | None = None
        self.listener: Any = None
        self.scheduler: Peer | None = None
        self.pool: ConnectionPool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._functions = _FunctionCache()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._rejoin_waiters: collections.deque[threading.Event] = collections.deque()
        #: called (in the loop) when the worker closes, e.g. to close its task-side client
        self.on_close: list[Any] = []
        self._done: collections.deque = collections.deque()
        self._wake_pending = False
        self._tasks: set[asyncio.Task] = set()
        self._sid = itertools.count()
        self._closed = asyncio.Event()
        self.handlers = {"get_data": self._get_data, "update_data": self._update_data, "run": self._run}

    @property
    def address(self) -> str:
        return self.listener.address

    @property
    def data(self) -> dict:
        assert self.state is not None
        return self.state.data

    def __repr__(self) -> str:
        addr = self.listener.address if self.listener else "not started"
        return f"<Worker {addr!r}, name: {self.name}, status: {self.status}, threads: {self.nthreads}>"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Worker:
        if self.status == "running":
            return self
        self.loop = asyncio.get_running_loop()
        scheme, _ = parse_address(self.scheduler_address)
        listen_at = "inproc://" if scheme == "inproc" else f"tcp://{self.host}:0"
        info = {"role": "worker", "id": self.id, "versions": get_versions()}
        self.listener = await listen(listen_at, self._handle_comm, secret=self.secret, info=info)
        self.state = WorkerState(
            address=self.listener.address, nthreads=self.nthreads, resources=self.resources, validate=self.validate
        )
        self.pool = ConnectionPool(secret=self.secret, timeout=self.connect_timeout, info=info)
        for _ in range(self.nthreads):
            self._start_pool_thread()
        timeout = self.death_timeout or self.connect_timeout
        comm = await connect(self.scheduler_address, secret=self.secret, timeout=timeout, info=info)
        self.scheduler = Peer(comm, self.handlers, self._on_scheduler_messages)
        self.scheduler.send(
            m.RegisterWorker(
                self.address, self.name, self.nthreads, self.memory_limit, self.resources, os.getpid(),
                self.local_directory, get_versions(), self.nanny,
            )
        )  # fmt: skip
        self._own(self._watch_scheduler())
        self.status = "running"
        return self

    def __await__(self):
        return self.start().__await__()

    async def __aenter__(self) -> Worker:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _watch_scheduler(self) -> None:
        assert self.scheduler is not None
        await self.scheduler.run()
        if self.status == "running":
            logger.info("lost the scheduler connection; closing worker %s", self.address)
            self._own(self.close())

    async def finished(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        if self.status in ("closing", "closed"):
            await self._closed.wait()
            return
        self.status = "closing"
        for _ in range(self.nthreads):
            self._queue.put(None)
        for callback in self.on_close:
            try:
                await callback()
            except Exception:
                logger.exception("error in a worker close callback")
        if self.listener is not None:
            await self.listener.stop()
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.pool is not None:
            await self.pool.close()
        current = asyncio.current_task()
        for t in list(self._tasks):
            if t is not current:
                t.cancel()
        for t in list(self._tasks):
            if t is not current:
                try:
                    await t
                except BaseException:
                    pass
        if self._own_directory:
            shutil.rmtree(self.local_directory, ignore_errors=True)
        self.status = "closed"
        self._closed.set()

    def _own(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ events in, instructions out

    def _on_scheduler_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        sid = f"scheduler-{next(self._sid)}"
        events: list[Any] = []
        for msg in msgs:
            if type(msg) is m.ComputeTask:
                events.append(ComputeTaskEvent(sid, msg))
            elif type(msg) is m.FreeKeys:
                events.append(FreeKeysEvent(sid, msg.keys))
            elif type(msg) is m.StealRequest:
                events.append(StealRequestEvent(sid, msg.key, msg.run_id))
            else:
                logger.warning("unexpected message from the scheduler: %s", msg.op)
        if events:
            self._handle(events)

    def _handle(self, events: list[Any]) -> None:
        assert self.state is not None
        for inst in self.state.handle_stimulus(*events):
            kind = type(inst)
            if kind is Execute:
                self._queue.put(inst)
            elif kind is SendToScheduler:
                if self.scheduler is not None and not self.scheduler.closed:
                    self.scheduler.send(inst.msg)
            elif kind is Gather:
                self._own(self._gather(inst))
            else:  # pragma: no cover
                raise TypeError(inst)

    # ------------------------------------------------------------------ execution (threads)

    def _start_pool_thread(self) -> None:
        t = threading.Thread(target=self._work, name=f"shoal-task-{len(self._threads)}", daemon=True)
        self._threads = [th for th in self._threads if th.is_alive()]
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        _thread_state.worker = self
        _thread_state.seceded = False
        get = self._queue.get
        while True:
            inst = get()
            if inst is None:
                return
            if inst is _REJOIN:
                if self._rejoin_waiters:
                    self._rejoin_waiters.popleft().set()
                    return  # the rejoining thread takes this thread's place in the pool
                continue
            event = self._execute(inst)
            self._done.append(event)
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self.loop.call_soon_threadsafe(self._drain_done)  # type: ignore[union-attr]
                except RuntimeError:  # the loop is closed: the worker is going away
                    return
            if _thread_state.seceded:
                return  # this thread left the pool; its replacement serves the queue

    def secede(self) -> None:
        """Called from a task: give this thread's pool slot back (the task keeps running)."""
        if getattr(_thread_state, "worker", None) is not self or _thread_state.seceded:
            return
        key, run_id = getattr(_thread_state, "key", None), getattr(_thread_state, "run_id", None)
        if key is None:
            raise ValueError("secede() must be called from inside a task")
        _thread_state.seceded = True
        self._start_pool_thread()
        event = SecedeEvent(f"secede-{next(self._sid)}", key, run_id)
        self.loop.call_soon_threadsafe(self._handle_if_running, [event])  # type: ignore[union-attr]

    def rejoin(self) -> None:
        """Called from a seceded task: wait for a pool thread to free up, take its place."""
        if getattr(_thread_state, "worker", None) is not self or not _thread_state.seceded:
            return
        ready = threading.Event()
        self._rejoin_waiters.append(ready)
        self._queue.put(_REJOIN)
        ready.wait()
        _thread_state.seceded = False

    def _handle_if_running(self, events: list[Any]) -> None:
        if self.status == "running":
            self._handle(events)

    def _drain_done(self) -> None:
        self._wake_pending = False
        done = self._done
        events = []
        while done:
            events.append(done.popleft())
        if events and self.status == "running":
            self._handle(events)

    def _execute(self, inst: Execute) -> Any:
        sid = "execute"
        _thread_state.key = inst.key
        _thread_state.run_id = inst.run_id
        start = time.time()
        try:
            result = run_task(inst.key, inst.func, inst.spec, inst.deps, self._functions.load)
            if inspect.isawaitable(result):
                result = asyncio.run_coroutine_threadsafe(_await(result), self.loop).result()  # type: ignore[arg-type]
            stop = time.time()
            nbytes = sizeof(result)
            inline = None
            if inst.inline and nbytes <= self.inline_limit:
                try:
                    p = dumps(result)
                    if p.nbytes <= self.inline_limit and not p.buffers:
                        inline = p
                except Exception:
                    inline = None
            return ExecuteSuccess(sid, inst.key, inst.run_id, result, nbytes, typename(type(result)), start, stop, inline)
        except Reschedule:
            return RescheduleEvent(sid, inst.key, inst.run_id)
        except BaseException as e:  # noqa: BLE001 - any failure of user code is the task's result
            stop = time.time()
            return ExecuteFailure(sid, inst.key, inst.run_id, *_pack_exception(e), start, stop)
        finally:
            _thread_state.key = None

    # ------------------------------------------------------------------ data movement

    async def _gather(self, inst: Gather) -> None:
        assert self.pool is not None
        sid = f"gather-{next(self._sid)}"
        try:
            peer = await self.pool.get(inst.worker)
            reply = await peer.request("get_data", keys=list(inst.keys))
            data = {k: loads(v) for k, v in reply["data"].items()}
            event = GatherDone(sid, inst.worker, inst.keys, data, dict(reply["nbytes"]))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.info("could not fetch %d keys from %s: %s", len(inst.keys), inst.worker, e)
            self.pool.forget(inst.worker)
            event = GatherDone(sid, inst.worker, inst.keys, {}, {}, failed=True)
        if self.status == "running":
            self._handle([event])

    async def _handle_comm(self, comm: Any) -> None:
        peer = Peer(comm, self.handlers)
        try:
            await peer.run()
        finally:
            await peer.close()

    async def _get_data(self, peer: Peer, keys: Any) -> dict:
        data = self.state.data  # type: ignore[union-attr]
        nbytes = self.state.nbytes  # type: ignore[union-attr]
        out = {}
        sizes = {}
        for k in keys:
            if k in data:
                out[k] = dumps(data[k])
                sizes[k] = nbytes.get(k, 0)
        return {"data": out, "nbytes": sizes}

    async def _update_data(self, peer: Peer, data: dict) -> dict:
        values = {k: loads(v) for k, v in data.items()}
        nbytes = {k: sizeof(v) for k, v in values.items()}
        self._handle([UpdateDataEvent(f"update-data-{next(self._sid)}", values, nbytes)])
        return {"nbytes": nbytes}

    async def _run(self, peer: Peer, function: Pickled, args: Pickled, wait: bool = True) -> Pickled:
        func = loads(function)
        a, kw = loads(args)
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        if "dask_worker" in params:
            kw["dask_worker"] = self
        result = func(*a, **kw)
        if inspect.isawaitable(result):
            if not wait:
                self._own(_await(result))
                return dumps(None)
            result = await result
        return dumps(result)


async def _await(aw: Any) -> Any:
    return await aw


def _pack_exception(e: BaseException) -> tuple:
    """(pickled exception, traceback frames, text), robust to exceptions that do not pickle."""
    frames = frames_of(e.__traceback__, _OWN_FRAMES)
    text = "".join(tb_module.format_exception_only(type(e), e)).strip()
    try:
        p = dumps(e)
        loads(p)  # some exceptions pickle but cannot be rebuilt; find out here, not on the client
    except Exception:
        p = dumps(RuntimeError(f"{text} (the original exception could not be serialized)"))
    return p, frames, text
