"""The worker's I/O shell: runs what the `WorkerState` machine decides.

- `compute-task` / `free-keys` from the scheduler become events;
- `Execute` instructions go to a pool of `nthreads` threads; finished executions are
  collected in a deque and fed back in batches (one loop wake-up per batch, not per task);
- `Fetch` instructions fetch many keys from one peer in one request;
- `SendToScheduler` messages go on the scheduler connection, coalesced per loop tick.
- `Spill` instructions run on one spill thread (`shoal.worker.memory`: the results live
  in a `SpillStore`); a monitor samples memory every `shoal.worker.memory.monitor-interval`
  (and after results arrive while managed memory is above `target`) and feeds
  `MemorySample`s in, so the state machine decides when to spill and pause.
It also serves `get_data` to peers and clients (a spilled value as its bytes on disk), accepts `update_data` (scatter), runs
functions sent with `Client.run`, fetches replicas when the scheduler asks
(`acquire_replicas`, for replicate/rebalance), and answers the introspection requests
(`call_stack`, `story`, `versions`, `dump_state`, hardware benchmarks). It hosts worker
plugins (`plugin_add` / `plugin_remove`, run as worker setups the scheduler keeps; their
`transition` hooks observe the state machine's story only while one is registered).

Actors (`shoal.actor`): an actor task's object stays here (`WorkerState.actors`) and its
proxy is the task's result. `actor-call` messages from any connection run the object's
plain methods (and attribute reads) in arrival order on one dedicated thread, started on
first use; ``async def`` methods run on the event loop. Outcomes go back as
`actor-result` on the connection the call came from, collected like task completions
(one loop wake-up per batch).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import itertools
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback as tb_module
import uuid
from collections.abc import Iterator
from threading import get_ident
from typing import Any

import msgpack
import psutil
from dask.utils import parse_bytes, parse_timedelta

from shoal import _gc, config, log_buffer, log_terminal, secret_files, server_options
from shoal import profile as profile_mod
from shoal._context import task_state
from shoal._loop import in_loop_thread
from shoal.background import BackgroundTasks
from shoal.comm import connect, listen
from shoal.comm.addressing import parse_address
from shoal.comm.errors import CommClosedError
from shoal.exceptions import Reschedule
from shoal.graph.spec import run_task
from shoal.protocol import messages as m
from shoal.protocol.events import check_event_message
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.protocol.tracebacks import capped, frames_of, shorten, truncate
from shoal.system_monitor import SystemMonitor
from shoal.protocol.requests import WORKER_REQUESTS, check_packet
from shoal.rpc import ConnectionPool, Peer
from shoal.rpc.server import Server
from shoal.utils import key_prefix, overrides_hook, typename
from shoal.versions import PACKAGES, get_versions, versions_report
from shoal.worker.options import WorkerOptions
from shoal.worker.memory import MemoryLimits, SpillStore, compression_from_config
from shoal.worker.sizeof import sizeof
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteFailure,
    ExecuteSuccess,
    FreeKeysEvent,
    Fetch,
    FetchDone,
    MemorySample,
    RescheduleEvent,
    SecedeEvent,
    SendToScheduler,
    Spill,
    SpillDone,
    StealRequestEvent,
    UpdateDataEvent,
    WorkerState,
)

logger = logging.getLogger("shoal.worker")

#: frames of these files (how a task's function gets called) are left out of profiles
_PROFILE_SKIP = (os.sep + os.path.join("shoal", "graph") + os.sep, os.path.join("dask", "_task_spec"))

_thread_state = task_state

#: put in the work queue by `rejoin`: the pool thread that takes it hands over its place
_REJOIN = object()
_MISSING = object()


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

    def clear(self) -> None:
        with self.lock:
            self.cache.clear()


def _batches(keys: list, nbytes: dict, limit: int) -> Iterator[list]:
    """`keys` in order, cut into lists of at most `limit` bytes by `nbytes` (a key of
    unknown size counts 0; a key bigger than `limit` goes alone)."""
    batch: list = []
    size = 0
    for key in keys:
        n = int(nbytes.get(key) or 0)
        if batch and size + n > limit:
            yield batch
            batch, size = [], 0
        batch.append(key)
        size += n
    if batch:
        yield batch


class Worker(Server):
    """A worker server. `await Worker(scheduler_address, ...)` starts it (the life cycle,
    background tasks and extension hosting are `shoal.rpc.server.Server`'s)."""

    def __init__(
        self,
        scheduler_address: str | None = None,
        *,
        nthreads: int = 1,
        name: Any = None,
        memory_limit: int = 0,
        resources: dict | None = None,
        secret: bytes | None = None,
        host: str | None = None,
        local_directory: str | None = None,
        nanny: str | None = None,
        validate: bool | None = None,
        death_timeout: float | None = None,
        port: int | None = None,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        scheduler_file: str | None = None,
        security: Any = None,
        interface: str | None = None,
        protocol: str | None = None,
        heartbeat_interval: Any = None,
        silence_logs: Any = None,
        preload: Any = None,
        preload_argv: Any = None,
        plugins: Any = (),
        lifetime: Any = None,
        lifetime_stagger: Any = None,
        lifetime_restart: bool | None = None,
        data: Any = None,
        dashboard_address: Any = None,
        services: Any = None,
        executor: Any = None,
        contact_address: str | None = None,
        extensions: Any = None,
        metrics: Any = None,
        startup_information: Any = None,
        dashboard: bool | None = None,
        http_prefix: str | None = None,
        low_level_profiler: bool | None = None,
        profile_cycle_interval: Any = None,
        transition_counter_max: Any = None,
        scheduler_sni: str | None = None,
        WorkerStateClass: Any = None,
    ):
        """The scheduler is `scheduler_address`, or distributed's `scheduler_ip` (+
        `scheduler_port`), or read from `scheduler_file` (with its secret) at start.
        `preload`, `plugins`, `lifetime*` and `data` are `shoal.worker.options`'; options
        of distributed's shoal does not honour are refused by name (`shoal.server_options`)."""
        server_options.refuse(
            "Worker", services=services, executor=executor, contact_address=contact_address, extensions=extensions,
            metrics=metrics, startup_information=startup_information, dashboard=dashboard, http_prefix=http_prefix,
            low_level_profiler=low_level_profiler, profile_cycle_interval=profile_cycle_interval,
            transition_counter_max=transition_counter_max, scheduler_sni=scheduler_sni,
            WorkerStateClass=WorkerStateClass,
        )  # fmt: skip
        if dashboard_address is not None:
            raise NotImplementedError(
                f"Worker(dashboard_address={dashboard_address!r}) is not supported by shoal: its workers serve no "
                "dashboard of their own; the scheduler's shows them"
            )
        server_options.check_protocol("Worker", protocol, ("tcp", "inproc"))
        self.options = WorkerOptions(
            preload=preload, preload_argv=preload_argv, lifetime=lifetime, lifetime_stagger=lifetime_stagger,
            lifetime_restart=lifetime_restart, plugins=plugins, data=data,
        )  # fmt: skip
        if scheduler_address is None:
            scheduler_address = server_options.scheduler_address(scheduler_ip, scheduler_port)
        if scheduler_address is None and scheduler_file is None:
            raise TypeError("Worker needs the scheduler: scheduler_address, scheduler_ip or scheduler_file")
        if secret is None and security is not None:
            secret = getattr(security, "secret", None)
        if host is None:
            host = server_options.host_of_interface(interface) if interface else "127.0.0.1"
        self.scheduler_file = scheduler_file
        self._silence = silence_logs
        super().__init__("worker")
        self.scheduler_address = scheduler_address
        #: the TCP port to listen on (0 or None: any free one)
        self.port = int(port or 0)
        self.nthreads = int(nthreads)
        self.memory_limit = int(memory_limit or 0)
        #: `shoal.worker.memory`'s thresholds for this worker (read once, here)
        self.memory_limits = MemoryLimits.from_config(self.memory_limit)
        if self.options.data is not None:  # a store of the user's: it decides where results live, no spilling
            self.memory_limits = MemoryLimits.from_config(self.memory_limit, target=False, spill=False)
        self.memory_monitor_interval = config.get_timedelta("worker.memory.monitor-interval")
        self.transfer_bytes_limit = int(parse_bytes(config.get("worker.transfer.message-bytes-limit")))
        self._spill_compression = compression_from_config(config.get("worker.memory.spill-compression"))
        #: where results live: a `SpillStore` when this worker spills, else a dict
        self.store: Any = None
        self._spill_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._spilling: concurrent.futures.Future | None = None  # the last spill job
        self._process = psutil.Process()
        self._system: SystemMonitor | None = None  # cpu, fds, network for the heartbeat
        self._sampling = False
        self.resources = dict(resources if resources is not None else config.get("worker.resources") or {})
        # none given: a scheduler this user started on this machine (shoal.secret_files)
        self.secret = secret if secret is not None or scheduler_address is None else secret_files.lookup(scheduler_address)
        self.host = host
        self.id = f"Worker-{uuid.uuid4()}"
        self.name = name if name is not None else self.id
        self.nanny = nanny
        self._own_directory = local_directory is None
        self.local_directory = local_directory or tempfile.mkdtemp(prefix="shoal-worker-")
        self.validate = bool(config.get("worker.validate")) if validate is None else validate
        self.inline_limit = config.get_bytes("client.inline-result-size")
        self.connect_timeout = config.get_timedelta("comm.timeouts.connect")
        #: seconds between heartbeats to the scheduler (see `shoal.scheduler.liveness`)
        self.heartbeat_interval = (
            config.get_timedelta("worker.heartbeat-interval") if heartbeat_interval is None
            else float(parse_timedelta(heartbeat_interval, default="s"))
        )  # fmt: skip
        #: how long to keep trying to reach the scheduler at start (default: connect timeout)
        self.death_timeout = death_timeout
        self.state: WorkerState | None = None
        self.listener: Any = None
        self.scheduler: Peer | None = None
        self.pool: ConnectionPool | None = None
        self._functions = _FunctionCache()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._rejoin_waiters: collections.deque[threading.Event] = collections.deque()
        self._done: collections.deque = collections.deque()
        self._wake_pending = False
        self._sid = itertools.count()
        self._heartbeat_task: asyncio.Task | None = None
        self._actor_queue: queue.SimpleQueue | None = None
        self._actor_thread: threading.Thread | None = None
        self._actor_done: collections.deque = collections.deque()
        self._actor_wake_pending = False
        #: thread ident -> key of the task it executes (for `call_stack` and the profiler)
        self._running: dict[int, Any] = {}
        #: worker plugins by name (`plugin_add`; see `shoal.diagnostics.plugin`)
        self.plugins: dict[str, Any] = {}
        #: those of them with a `transition` hook (they observe the state machine)
        self._transition_plugins: dict[str, Any] = {}
        #: the statistical profiler and RSS history (`shoal.profile`), started with the worker
        self.profiler: profile_mod.Sampler | None = None
        self.handlers.update({
            "get_data": self._get_data,
            "update_data": self._update_data,
            "run": self._run,
            "task_stream": self._task_stream,
            "profile": self._profile,
            "memory_history": self._memory_history,
            "acquire_replicas": self._acquire_replicas,
            "call_stack": self._call_stack,
            "versions": self._versions,
            "story": self._story,
            "dump_state": self._dump_state,
            "echo": self._echo,
            "benchmark_disk": self._benchmark_disk,
            "benchmark_memory": self._benchmark_memory,
            "benchmark_network": self._benchmark_network,
            "get_logs": self._get_logs,
        })
        # the shuffle service's buffers (shoal/shuffle/worker.py), through the door
        from shoal.shuffle.worker import ShuffleWorkerExtension

        self.add_extension("shuffle", ShuffleWorkerExtension(self))

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
        """Listen, connect to the scheduler and serve; a failure closes what started and
        raises ``RuntimeError("Worker failed to start: ...")`` chaining the cause, as in
        distributed."""
        if self.status == "running":
            return self
        try:
            return await self._start()
        except Exception as e:
            try:
                await self.close()
            except Exception:  # noqa: BLE001 - the start's failure is the one to report
                logger.debug("closing worker %s after a failed start", self.id, exc_info=True)
            raise RuntimeError(f"Worker failed to start: {e}") from e

    async def _start(self) -> Worker:
        self.loop = asyncio.get_running_loop()
        log_buffer.install()
        if self._silence:
            self._silence = log_terminal.silence(self._silence)  # restored at close
        if self.scheduler_address is None:
            from shoal.scheduler_file import read_scheduler_file, secret_from

            found = await asyncio.to_thread(read_scheduler_file, self.scheduler_file, self.death_timeout)
            self.scheduler_address = found["address"]
            if self.secret is None:
                self.secret = secret_from(found) or secret_files.lookup(self.scheduler_address)
        scheme, _ = parse_address(self.scheduler_address)
        listen_at = "inproc://" if scheme == "inproc" else f"tcp://{self.host}:{self.port}"
        info = {"role": "worker", "id": self.id, "versions": get_versions()}
        self.listener = await listen(listen_at, self._handle_comm, secret=self.secret, info=info)
        nbytes: dict = {}
        custom = self.options.store()
        if custom is not None:
            self.store = custom
        elif self.memory_limits.spills:
            spill_dir = tempfile.mkdtemp(prefix="storage-", dir=self.local_directory)
            self.store = SpillStore(spill_dir, nbytes, self._spill_compression)
            self._spill_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shoal-spill")
        else:
            self.store = {}
        self.state = WorkerState(
            address=self.listener.address,
            nthreads=self.nthreads,
            resources=self.resources,
            validate=self.validate,
            task_stream_length=int(config.get("worker.task-stream-length")),
            max_bytes_per_fetch=self.transfer_bytes_limit,
            clock=time.time,
            data=self.store,
            nbytes=nbytes,
            memory=self.memory_limits,
        )
        # peers are other workers, which listened before anyone learned their address: a
        # refused connection means that worker died, so fail the fetch at once
        self.pool = ConnectionPool(secret=self.secret, timeout=self.connect_timeout, info=info, retry_refused=False)
        for _ in range(self.nthreads):
            self._start_pool_thread()
        timeout = self.death_timeout or self.connect_timeout
        comm = await connect(self.scheduler_address, secret=self.secret, timeout=timeout, info=info)
        self.scheduler = Peer(comm, self.handlers, self._on_scheduler_messages, accepts=_from_scheduler)
        self.scheduler.send(
            m.RegisterWorker(
                self.address, self.name, self.nthreads, self.memory_limit, self.resources, os.getpid(),
                self.local_directory, get_versions(), self.nanny,
            )
        )  # fmt: skip
        self.spawn(self._watch_scheduler())
        if self.memory_limits.enabled and self.memory_monitor_interval > 0:
            self.spawn(self._monitor_memory(self.memory_monitor_interval))
        self._start_profiler()
        if self.heartbeat_interval > 0:
            self._heartbeat_task = self.spawn(self._heartbeat(self.scheduler, self.heartbeat_interval))
        await self.start_extensions()
        self.status = "running"
        await self.options.started(self)  # plugins, preloads, the lifetime timer
        return self

    async def _watch_scheduler(self) -> None:
        assert self.scheduler is not None
        await self.scheduler.run()
        if self.status == "running":
            logger.info("lost the scheduler connection; closing worker %s", self.address)
            self.spawn(self.close())

    async def _heartbeat(self, scheduler: Peer, interval: float) -> None:
        """Tell the scheduler we are alive, so it can tell a silent worker from a quiet one."""
        while not scheduler.closed:
            await asyncio.sleep(interval)
            try:
                scheduler.notify("heartbeat", metrics=self.metrics())
            except CommClosedError:
                return

    # ------------------------------------------------------------------ memory

    def metrics(self) -> dict:
        """What this worker reports with each heartbeat: process memory (`memory`, RSS),
        `managed_bytes` (all results held, on disk too), `spilled_bytes` (`memory`: the
        in-memory size of what is on disk, `disk`: bytes on disk), the spill totals, and
        whether the worker is paused."""
        st = self.state
        store = self.store
        rss = self._process.memory_info().rss
        out = {
            "memory": rss,
            "managed_bytes": sum(st.nbytes.values()) if st is not None else 0,
            "spilled_bytes": {"memory": 0, "disk": 0},
            "status": "paused" if st is not None and st.paused else "running",
            "executing": len(st.executing) if st is not None else 0,
            "in_memory": len(store) if store is not None else 0,
        }
        if self._system is None:
            self._system = SystemMonitor(n=1)
        out.update(self._system.as_metrics())  # cpu, num_fds, host_net_io (the /workers page)
        if isinstance(store, SpillStore):
            out["spilled_bytes"] = {"memory": store.spilled_bytes, "disk": store.disk_bytes}
            out["spill"] = {
                "count": store.spill_count, "bytes": store.spill_bytes, "unspill_count": store.unspill_count,
                "write_seconds": store.spilled.write_seconds, "read_seconds": store.spilled.read_seconds,
            }  # fmt: skip
        return out

    def _managed_spilled(self) -> tuple[int, int]:
        """(managed bytes in memory, managed bytes spilled): read from any thread."""
        store = self.store
        if isinstance(store, SpillStore):
            return store.memory_bytes, store.spilled_bytes
        st = self.state
        return (sum(st.nbytes.copy().values()) if st is not None else 0), 0

    def _memory_sample(self) -> MemorySample:
        managed, spilled = self._managed_spilled()
        return MemorySample(f"memory-{next(self._sid)}", managed, spilled, self._process.memory_info().rss)

    async def _monitor_memory(self, interval: float) -> None:
        """Feed the state machine a memory reading every `interval` seconds."""
        while self.status == "running":
            self._handle([self._memory_sample()])
            await asyncio.sleep(interval)

    async def _spill(self, nbytes: int) -> None:
        store = self.store
        assert isinstance(store, SpillStore) and self._spill_thread is not None
        self._spilling = self._spill_thread.submit(store.evict_bytes, nbytes)
        try:
            freed, error = await asyncio.wrap_future(self._spilling)
        except Exception as e:  # noqa: BLE001 - e.g. a value that cannot be pickled
            freed, error = 0, f"could not spill: {type(e).__name__}: {e}"
        if error is not None:
            logger.error("Worker %s %s; pausing until data can be spilled or is freed", self.address, error)
            self.log_event("worker-spill-error", {"worker": self.address, "error": error})
        if self.status == "running":
            self._handle([SpillDone(f"spill-{next(self._sid)}", freed, error)])

    async def close(self) -> None:
        if self.status in ("closing", "closed"):
            await self._closed.wait()
            return
        self.status = "closing"
        await self.options.closing(self)
        for _ in range(self.nthreads):
            self._queue.put(None)
        if self._actor_queue is not None:
            self._actor_queue.put(None)
        await self.close_extensions()
        for name in list(self.plugins):
            try:
                await self.plugin_remove(name)
            except Exception:
                logger.exception("teardown of worker plugin %r failed", name)
        if self.profiler is not None:
            self.profiler.close()
        if self.listener is not None:
            await self.listener.stop()
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.pool is not None:
            await self.pool.close()
        await self.background.close()
        if self.local_directory in sys.path:  # put there by `upload_file`
            sys.path.remove(self.local_directory)
        if self._spill_thread is not None:
            if isinstance(self.store, SpillStore):
                self.store.closing = True  # a spill in progress ends after its current key
            self._spill_thread.shutdown(wait=False, cancel_futures=True)
            if self._spilling is not None:  # wait for it without parking a thread
                await asyncio.wait([asyncio.wrap_future(self._spilling)])
        if isinstance(self.store, SpillStore):
            self.store.close()  # its files, whoever owns the local directory
        if self._own_directory:
            shutil.rmtree(self.local_directory, ignore_errors=True)
        if isinstance(self._silence, tuple):
            log_terminal.restore(self._silence)
        self.closed()

    def _start_profiler(self) -> None:
        loop_thread = threading.get_ident()
        running = self._running

        def targets() -> list[tuple[int, str]]:
            out = [(ident, key_prefix(key)) for ident, key in running.copy().items()]
            out.append((loop_thread, profile_mod.SERVER))
            return out

        self.profiler = profile_mod.sampler_from_config(
            "worker", targets, memory=True, stop_code=Worker._execute.__code__, skip_files=_PROFILE_SKIP,
            name="shoal-worker-profile", memory_extra=self._managed_spilled,
        )  # fmt: skip
        self.profiler.start()

    # ------------------------------------------------------------------ events in, instructions out

    def _stimulus_failed(self, events: list[Any], exc: Exception) -> None:
        """A handler of the worker's state machine raised (a bug): go on only if the state
        still passes `validate_state`; otherwise close the worker with a fatal error (its
        nanny starts a fresh one, the scheduler recomputes what it held)."""
        kinds = [type(e).__name__ for e in events]
        try:
            self.state.validate_state()  # type: ignore[union-attr]
        except Exception as invalid:
            logger.critical(
                "FATAL: the worker state machine failed on %s (%r) and left an invalid state (%s); "
                "the worker is closing", kinds, exc, str(invalid).splitlines()[0], exc_info=exc,
            )  # fmt: skip
            if self.status == "running":
                self.spawn(self.close())
            return
        logger.error("worker state machine failed on %s; the stimulus was refused, state is valid", kinds, exc_info=exc)

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
        executes = []
        started = False
        scheduler = self.scheduler
        try:
            instructions = self.state.handle_stimulus(*events)
        except Exception as exc:
            self._stimulus_failed(events, exc)
            raise
        for inst in instructions:
            kind = type(inst)
            if kind is Execute:
                executes.append(inst)
            elif kind is SendToScheduler:
                if scheduler is not None and not scheduler.closed:
                    scheduler.send(inst.msg)
                    started = started or type(inst.msg) is m.TaskStarted
                if type(inst.msg) is m.WorkerStatus:
                    self._log_status(inst.msg.status)
            elif kind is Fetch:
                self.spawn(self._fetch(inst))
            elif kind is Spill:
                self.spawn(self._spill(inst.nbytes))
            else:  # pragma: no cover
                raise TypeError(inst)
        if started:
            # on its way before any thread runs the task: a task that kills this process
            # at once is still known to the scheduler to have been executing
            scheduler.comm.flush()  # type: ignore[union-attr]
        for inst in executes:
            self._queue.put(inst)
        st = self.state
        if (
            type(self.store) is SpillStore and not st.spilling and st.spill_error is None and not self._sampling
            and self.store.memory_bytes > self.memory_limits.bytes_at(self.memory_limits.target)
        ):  # fmt: skip
            self._sampling = True  # past target: spill now, not at the next tick
            try:
                self._handle([self._memory_sample()])
            finally:
                self._sampling = False

    def _log_status(self, status: str) -> None:
        st = self.state
        assert st is not None
        managed, spilled, process = st.memory_figures
        limit = self.memory_limit
        if status == "paused":
            why = st.spill_error or f"process memory {_fmt(process)} is above {st.memory.pause:.0%} of {_fmt(limit)}"
            logger.warning("Worker %s paused: %s (managed %s, spilled %s)", self.address, why, _fmt(managed), _fmt(spilled))
        else:
            logger.warning("Worker %s resumed: process memory %s of %s", self.address, _fmt(process), _fmt(limit))
        self.log_event("worker-status", {"worker": self.address, "status": status, "memory": process})

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

    def log_event(self, topic: str | list, msg: Any) -> None:
        """Log `msg` (plain msgpack data) under `topic` on the scheduler; from any thread."""
        check_event_message(msg)
        if self.loop is None or self.status != "running":
            return

        def send() -> None:
            if self.scheduler is not None and not self.scheduler.closed:
                self.scheduler.notify("log_event", topic=topic, msg=msg)

        if in_loop_thread(self.loop):
            send()
        else:
            try:
                self.loop.call_soon_threadsafe(send)
            except RuntimeError:  # the loop is closed: the worker is going away
                pass

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
        sid = f"execute-{next(self._sid)}"  # one stimulus id per batch of completions
        while done:
            ev = done.popleft()
            ev.stimulus_id = sid
            events.append(ev)
        if events and self.status == "running":
            self._handle(events)

    def _execute(self, inst: Execute) -> Any:
        sid = "execute"
        _thread_state.key = inst.key
        _thread_state.run_id = inst.run_id
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
                result = asyncio.run_coroutine_threadsafe(_await(result), self.loop).result()  # type: ignore[arg-type]
            stop = time.time()
            if inst.actor:
                return self._actor_created(inst, result, start, stop)
            nbytes = sizeof(result)
            inline = None
            if inst.inline and nbytes <= self.inline_limit:
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
            return ExecuteFailure(sid, inst.key, inst.run_id, *_pack_exception(e), start, stop, get_ident())
        finally:
            _thread_state.key = None
            self._running.pop(ident, None)

    def _actor_created(self, inst: Execute, instance: Any, start: float, stop: float) -> ExecuteSuccess:
        from shoal.actor import Actor

        proxy = Actor(type(instance), self.address, inst.key)
        inline = dumps(proxy) if inst.inline else None
        if inline is not None and (inline.nbytes > self.inline_limit or inline.buffers):
            inline = None
        nbytes = sizeof(instance)
        name = typename(type(instance))
        return ExecuteSuccess(
            "execute", inst.key, inst.run_id, proxy, nbytes, name, start, stop, inline, instance=instance, thread=get_ident()
        )

    # ------------------------------------------------------------------ actors

    def _on_peer_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        for msg in msgs:
            if type(msg) is m.ActorCall:
                self._actor_call(peer, msg)
            else:
                logger.warning("unexpected message from %s: %s", peer.address, msg.op)

    def _actor_call(self, peer: Peer, msg: m.ActorCall) -> None:
        if not msg.attribute:
            instance = self.state.actors.get(msg.key)  # type: ignore[union-attr]
            if instance is not None and inspect.iscoroutinefunction(getattr(instance, msg.name, None)):
                self.spawn(self._actor_call_async(peer, msg, instance))
                return
        q = self._actor_queue
        if q is None:
            q = self._actor_queue = queue.SimpleQueue()
            self._actor_thread = threading.Thread(target=self._actor_work, name="shoal-actor", daemon=True)
            self._actor_thread.start()
        q.put((peer, msg))

    def _actor_work(self) -> None:
        """The actor thread: runs calls in arrival order, hands outcomes to the loop."""
        _thread_state.worker = self
        _thread_state.actor = True
        get = self._actor_queue.get  # type: ignore[union-attr]
        actors = self.state.actors  # type: ignore[union-attr]
        done = self._actor_done
        while True:
            item = get()
            if item is None:
                return
            peer, msg = item
            try:
                instance = actors.get(msg.key, _MISSING)
                if instance is _MISSING:
                    raise ValueError(f"Actor {msg.key!r} is not held by worker {self.address}")
                attr = getattr(instance, msg.name)
                if msg.attribute:
                    value = attr
                elif msg.args is None:
                    value = attr()
                else:
                    args, kwargs = loads(msg.args)
                    value = attr(*args, **kwargs)
                reply = m.ActorResult(msg.id, True, dumps(value))
            except BaseException as e:  # noqa: BLE001 - the method's failure is its result
                reply = m.ActorResult(msg.id, False, _pack_exception(e)[0])
            done.append((peer, reply))
            if not self._actor_wake_pending:
                self._actor_wake_pending = True
                try:
                    self.loop.call_soon_threadsafe(self._send_actor_results)  # type: ignore[union-attr]
                except RuntimeError:  # the loop is closed: the worker is going away
                    return

    def _send_actor_results(self) -> None:
        self._actor_wake_pending = False
        done = self._actor_done
        while done:
            peer, reply = done.popleft()
            if not peer.closed:
                peer.send(reply)

    async def _actor_call_async(self, peer: Peer, msg: m.ActorCall, instance: Any) -> None:
        try:
            if msg.args is None:
                value = await getattr(instance, msg.name)()
            else:
                args, kwargs = loads(msg.args)
                value = await getattr(instance, msg.name)(*args, **kwargs)
            reply = m.ActorResult(msg.id, True, dumps(value))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - the method's failure is its result
            reply = m.ActorResult(msg.id, False, _pack_exception(e)[0])
        if not peer.closed:
            peer.send(reply)

    # ------------------------------------------------------------------ data movement

    async def _fetch(self, inst: Fetch) -> None:
        assert self.pool is not None
        sid = f"gather-{next(self._sid)}"
        start = time.time()
        try:
            peer = await self.pool.get(inst.worker)
            reply = await peer.request("get_data", keys=list(inst.keys))
            data = {k: loads(v) for k, v in reply["data"].items()}
            event = FetchDone(
                sid, inst.worker, inst.keys, data, dict(reply["nbytes"]), start=start, stop=time.time()
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.info("could not fetch %d keys from %s: %s", len(inst.keys), inst.worker, e)
            self.pool.forget(inst.worker)
            event = FetchDone(sid, inst.worker, inst.keys, {}, {}, failed=True)
        if self.status == "running":
            self._handle([event])

    async def _handle_comm(self, comm: Any) -> None:
        peer = Peer(comm, self.handlers, self._on_peer_messages, accepts=_from_peer)
        try:
            await peer.run()
        finally:
            await peer.close()

    async def _get_data(self, peer: Peer, keys: Any) -> dict:
        store = self.store
        nbytes = self.state.nbytes  # type: ignore[union-attr]
        out = {}
        sizes = {}
        on_disk = []
        spills = isinstance(store, SpillStore)
        for k in keys:
            if spills and k in store.spilled:
                on_disk.append(k)
            elif k in store:
                out[k] = dumps(store[k])
                sizes[k] = nbytes.get(k, 0)
        if on_disk:  # sent as the bytes on disk, read off the event loop, never unpickled here
            read = await asyncio.to_thread(_read_serialized, store, on_disk)
            for k, p in read.items():
                out[k] = p
                sizes[k] = nbytes.get(k, 0)
        return {"data": out, "nbytes": sizes}

    async def _update_data(self, peer: Peer, data: dict) -> dict:
        values = {k: loads(v) for k, v in data.items()}
        nbytes = {k: sizeof(v) for k, v in values.items()}
        self._handle([UpdateDataEvent(f"update-data-{next(self._sid)}", values, nbytes)])
        return {"nbytes": nbytes}

    async def _acquire_replicas(self, peer: Peer, who_has: dict, nbytes: dict | None = None) -> dict:
        """Fetch copies of keys (key -> holder addresses) from their holders, trying each
        holder in turn; keep them and report them to the scheduler. `nbytes` (key ->
        size, as the scheduler knows it) splits the keys into requests of at most
        `shoal.worker.transfer.message-bytes-limit`, each stored as it arrives, so that
        neither worker holds the whole copy in memory at once (both may be spilling).
        -> `{"nbytes": {key: bytes}}` of the keys now held here."""
        assert self.pool is not None and self.state is not None
        sizes = nbytes or {}
        remaining = {k: [a for a in addrs if a != self.address] for k, addrs in who_has.items() if k not in self.data}
        got: dict = {}

        async def fetch(holder: str, keys: list) -> dict:
            try:
                wpeer = await self.pool.get(holder)  # type: ignore[union-attr]
                return await wpeer.request("get_data", keys=keys)
            except Exception as e:  # noqa: BLE001 - an unreachable holder: try the next one
                logger.info("could not fetch %d replicas from %s: %s", len(keys), holder, e)
                self.pool.forget(holder)  # type: ignore[union-attr]
                return {"data": {}, "nbytes": {}}

        async def from_holder(holder: str, keys: list) -> dict:
            """Fetch `keys` from `holder` in batches, storing each; -> the keys it lacked
            mapped to their remaining holders."""
            left: dict = {}
            for batch in _batches(keys, sizes, self.transfer_bytes_limit):
                reply = await fetch(holder, batch)
                values, batch_nbytes = {}, {}
                for key in batch:
                    if key in reply["data"]:
                        values[key] = loads(reply["data"][key])
                        batch_nbytes[key] = reply["nbytes"].get(key, 0)
                    else:
                        left[key] = remaining[key][1:]
                if values and self.status == "running":
                    self._handle([UpdateDataEvent(f"acquire-replicas-{next(self._sid)}", values, batch_nbytes, report=True)])
                    got.update(batch_nbytes)
            return left

        while remaining:
            by_holder: dict[str, list] = {}
            for key, addrs in remaining.items():
                if addrs:
                    by_holder.setdefault(addrs[0], []).append(key)
            if not by_holder:
                break
            lefts = await asyncio.gather(*(from_holder(h, keys) for h, keys in by_holder.items()))
            remaining = {k: v for left in lefts for k, v in left.items()}
        return {"nbytes": got}

    async def _echo(self, peer: Peer, data: Any = None) -> Any:
        return data

    def _get_logs(self, peer: Peer, n: int | None = None) -> list:
        """This process's recent log lines, newest first (`shoal.log_buffer`)."""
        return log_buffer.recent(n)

    async def _benchmark_disk(self, peer: Peer) -> dict:
        from shoal import benchmarking

        return await asyncio.to_thread(benchmarking.benchmark_disk, self.local_directory)

    async def _benchmark_memory(self, peer: Peer) -> dict:
        from shoal import benchmarking

        return await asyncio.to_thread(benchmarking.benchmark_memory)

    async def _benchmark_network(self, peer: Peer, address: str) -> dict:
        """Bandwidth to the worker at `address`, by message size."""
        from shoal import benchmarking

        assert self.pool is not None
        return await benchmarking.benchmark_network(await self.pool.get(address))

    async def _dump_state(self, peer: Peer, exclude: Any = ()) -> dict:
        from shoal.worker.dump import worker_state

        return worker_state(self, exclude)

    async def _story(self, peer: Peer, keys: Any = ()) -> list:
        """This worker's story entries of these keys or stimulus ids."""
        return [list(e) for e in self.state.story(*keys)] if self.state is not None else []

    async def _versions(self, peer: Peer, packages: Any = None) -> dict:
        report = versions_report(packages)
        report["packages"].update(get_versions_flat_packages())  # what this worker registered with
        return report

    async def _call_stack(self, peer: Peer, keys: Any = None) -> dict:
        """`{key: [formatted frames]}` of the tasks executing right now (only `keys`)."""
        wanted = None if keys is None else set(keys)
        with _gc.paused():  # see shoal.profile.Sampler.sample: no collection inside
            frames = sys._current_frames()
        out = {}
        for ident, key in list(self._running.items()):
            frame = frames.get(ident)
            if frame is None or (wanted is not None and key not in wanted):
                continue
            out[key] = tb_module.format_stack(frame)
        return out

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
                self.spawn(_await(result))
                return dumps(None)
            result = await result
        return dumps(result)


    # ------------------------------------------------------------------ plugins

    def get_current_task(self) -> Any:
        """The key of the task running in this thread (distributed's `Worker.get_current_task`);
        with `state.tasks[key].metadata` a task attaches values to its task-stream record."""
        key = getattr(task_state, "key", None)
        if key is None:
            raise RuntimeError("get_current_task() is called from a task only")
        return key

    async def plugin_add(self, plugin: Any, name: str) -> None:
        """Add a worker plugin under `name` (replacing, after its teardown, one of the
        same name) and run its `setup(worker)`; errors in `setup` are raised (the plugin
        stays registered, as in distributed)."""
        if name in self.plugins:
            await self.plugin_remove(name)
        self.plugins[name] = plugin
        if overrides_hook(plugin, "transition"):
            self._transition_plugins[name] = plugin
            assert self.state is not None
            if self._plugin_transition not in self.state.observers:
                self.state.observers.append(self._plugin_transition)
        setup = getattr(plugin, "setup", None)
        if setup is not None:
            result = setup(worker=self)
            if inspect.isawaitable(result):
                await result

    async def plugin_remove(self, name: str) -> None:
        """Remove plugin `name` and run its `teardown(worker)`; errors are raised."""
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"The worker plugin {name} does not exist")
        self._transition_plugins.pop(name, None)
        if not self._transition_plugins and self.state is not None and self._plugin_transition in self.state.observers:
            self.state.observers.remove(self._plugin_transition)
        teardown = getattr(plugin, "teardown", None)
        if teardown is not None:
            result = teardown(worker=self)
            if inspect.isawaitable(result):
                await result

    def _plugin_transition(self, key: Any, start: str, finish: str, stimulus_id: str) -> None:
        """State machine observer: the story entry, to each plugin's `transition`."""
        for name, plugin in list(self._transition_plugins.items()):
            try:
                plugin.transition(key, start, finish, stimulus_id=stimulus_id)
            except Exception:
                logger.exception("worker plugin %r failed in transition(%r, %r, %r)", name, key, start, finish)

    def clear_function_cache(self) -> None:
        """Forget unpickled task functions (after `upload_file` reloaded their module)."""
        self._functions.clear()

    async def _profile(
        self, peer: Peer, start: float | None = None, stop: float | None = None, key: str | None = None,
        server: bool = False,
    ) -> dict:
        """The merged profile tree of [`start`, `stop`]: the task threads' (only tasks of
        prefix `key`), or the event loop's with `server` (see `shoal.profile`)."""
        if self.profiler is None:
            return profile_mod.create()
        return self.profiler.get_profile(start, stop, key, server)

    async def _memory_history(self, peer: Peer, start: float | None = None, stop: float | None = None) -> list:
        """`[(time, rss)]` samples of this worker process in [`start`, `stop`]."""
        if self.profiler is None:
            return []
        return self.profiler.get_memory(start, stop)

    async def _task_stream(
        self, peer: Peer, since: int | None = None, start: float | None = None, stop: float | None = None,
        count: int | None = None,
    ) -> dict:
        """Task-stream records (see `WorkerState.task_stream`) as dicts: those with index
        >= `since`, whose compute ended in [`start`, `stop`], at most the newest `count`;
        `dropped`: how many records the ring buffer no longer holds that the request would
        have covered (the records evicted since `since`; without `since`, all evicted
        ones unless the oldest record kept is older than `start`); `oldest`: when the
        compute of the oldest record held ended (every evicted one ended before)."""
        st = self.state
        assert st is not None
        records = list(st.task_stream)
        total = st.task_stream_count
        evicted = total - len(records)
        oldest = records[0][3] if records else None  # evicted records all ended before
        if since is not None:
            dropped = max(0, evicted - since)
            records = records[max(0, since - evicted) :]
        else:
            dropped = evicted if start is None or oldest is None or oldest >= start else 0
        if start is not None:
            records = [r for r in records if r[3] >= start]
        if stop is not None:
            records = [r for r in records if r[3] <= stop]
        if count is not None:
            if 0 <= count <= len(records):
                dropped = 0  # the newest `count` are all still here
            records = records[-count:] if count > 0 else []
        addr = self.address
        return {
            "count": total, "dropped": dropped, "oldest": oldest,
            "records": [_stream_record(r, addr) for r in records],
        }  # fmt: skip


def _stream_record(r: tuple, worker: str) -> dict:
    key, thread, start, stop, status, nbytes, type_name, transfers, error, stimulus_id, metadata = r
    startstops = [
        {"action": "transfer", "start": a, "stop": b, "source": src, "nbytes": n} for a, b, src, n in transfers or ()
    ]
    startstops.append({"action": "compute", "start": start, "stop": stop})
    rec = {
        "key": key, "worker": worker, "thread": thread, "status": status, "startstops": startstops,
        "stimulus_id": stimulus_id, "metadata": _wire_metadata(metadata),
    }  # fmt: skip
    if error is None:
        rec["nbytes"] = nbytes
        rec["type"] = rec["typename"] = type_name
    else:
        rec["exception_text"], frames = error
        frames = shorten(frames, config.get("admin.traceback.shorten") or [])  # the task's own frames
        rec["traceback_text"] = "".join(f'  File "{f}", line {n}, in {name}\n' for f, n, name in frames)
    return rec


def _wire_metadata(metadata: dict | None) -> dict:
    """A task's metadata as the task stream sends it: values msgpack cannot carry become
    their `repr` (one odd value must not cost the whole stream)."""
    if not metadata:
        return {}
    out = {}
    for k, v in metadata.items():
        try:
            msgpack.packb(v)
        except (TypeError, ValueError, OverflowError):
            v = repr(v)
        out[k if isinstance(k, (str, int)) else repr(k)] = v
    return out


def _read_serialized(store: SpillStore, keys: list) -> dict:
    out = {}
    for k in keys:
        try:
            out[k] = store.serialized(k)
        except KeyError:  # freed meanwhile
            pass
    return out


def _fmt(n: int) -> str:
    from dask.utils import format_bytes

    return format_bytes(n)


def get_versions_flat_packages() -> dict:
    """The package versions this worker announces when it registers."""
    versions = get_versions()
    return {name: versions[name] for name in PACKAGES if name in versions}


async def _await(aw: Any) -> Any:
    return await aw


def _pack_exception(e: BaseException) -> tuple:
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


def _from_scheduler(peer: Peer, msgs: list[m.Message]) -> str | None:
    """The scheduler's connection carries the scheduler's messages and worker calls."""
    return check_packet(msgs, WORKER_REQUESTS, m.SCHEDULER, "a worker's scheduler connection")


def _from_peer(peer: Peer, msgs: list[m.Message]) -> str | None:
    """Other connections carry peer messages (actors) and worker calls."""
    return check_packet(msgs, WORKER_REQUESTS, m.PEER, "a worker from a peer")
