"""The worker's I/O shell: runs what the `WorkerState` machine decides.

This module holds the `Worker`'s life cycle (listen, register, heartbeat, close), its
memory monitor and spill thread, and the one path of events in and instructions out:

- `compute-task` / `free-keys` / `steal-request` from the scheduler become events;
- `Execute` instructions go to the thread pool (`execution.py`);
- `Fetch` instructions fetch many keys from one peer in one request (`transfers.py`);
- `SendToScheduler` messages go on the scheduler connection, coalesced per loop tick.
- `Spill` instructions run on one spill thread (`shoal.worker.memory`: the results live
  in a `SpillStore`); a monitor samples memory every `shoal.worker.memory.monitor-interval`
  (and after results arrive while managed memory is above `target`) and feeds
  `MemorySample`s in, so the state machine decides when to spill and pause.

The rest of `Worker` is in mixins, one concern each: `execution.py` (the thread pool,
secede / rejoin), `actors.py` (actor calls), `transfers.py` (`get_data`, `update_data`,
`acquire_replicas`, fetches), `admin.py` (`run`, `call_stack`, `story`, `versions`,
`dump_state`, profiles, the task stream, hardware benchmarks) and `plugins.py` (worker
plugins).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import psutil
from dask.utils import parse_bytes, parse_timedelta

from shoal import config, log_buffer, log_terminal, secret_files, server_options
from shoal import profile as profile_mod
from shoal._loop import Handoff, in_loop_thread
from shoal.comm import connect, listen
from shoal.comm.addressing import parse_address
from shoal.comm.errors import CommClosedError
from shoal.protocol import messages as m
from shoal.protocol.events import check_event_message
from shoal.system_monitor import SystemMonitor
from shoal.protocol.requests import WORKER_REQUESTS, check_packet
from shoal.rpc import ConnectionPool, Peer
from shoal.rpc.server import Server
from shoal.utils import key_prefix
from shoal.versions import get_versions
from shoal.worker.actors import Actors
from shoal.worker.admin import Admin
from shoal.worker.options import WorkerOptions
from shoal.worker.execution import TASK_FRAME_CODE, Execution, FunctionCache, get_worker
from shoal.worker.memory import MemoryLimits, SpillStore, compression_from_config
from shoal.worker.plugins import Plugins
from shoal.worker.transfers import Transfers
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    FreeKeysEvent,
    Fetch,
    MemorySample,
    SendToScheduler,
    Spill,
    SpillDone,
    StealRequestEvent,
    WorkerState,
)

logger = logging.getLogger("shoal.worker")

#: frames of these files (how a task's function gets called) are left out of profiles
_PROFILE_SKIP = (os.sep + os.path.join("shoal", "graph") + os.sep, os.path.join("dask", "_task_spec"))

__all__ = ["Worker", "get_worker"]


class Worker(Execution, Actors, Transfers, Admin, Plugins, Server):
    """A worker server. `await Worker(scheduler_address, ...)` starts it (the life cycle,
    background tasks and extension hosting are `shoal.rpc.server.Server`'s). The
    execution, actors, transfers, introspection and plugins live in mixins of their own
    modules (`execution.py`, `actors.py`, `transfers.py`, `admin.py`, `plugins.py`)."""

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
            WorkerStateClass=WorkerStateClass, dashboard_address=dashboard_address,
        )  # fmt: skip
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
        self._functions = FunctionCache()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._rejoin_waiters: collections.deque[threading.Event] = collections.deque()
        #: finished executions, handed from the pool threads to the loop in batches
        self.completions = Handoff(self._drain_done)
        self._sid = itertools.count()
        self._heartbeat_task: asyncio.Task | None = None
        self._actor_queue: queue.SimpleQueue | None = None
        self._actor_thread: threading.Thread | None = None
        #: actor replies, handed from the actor thread to the loop in batches
        self.actor_results = Handoff(self._send_actor_results)
        #: thread ident -> key of the task it executes (for `call_stack` and the profiler)
        self._running: dict[int, Any] = {}
        #: worker plugins by name (`plugin_add`; see `shoal.diagnostics.plugin`)
        self.plugins: dict[str, Any] = {}
        #: those of them with a `transition` hook (they observe the state machine)
        self._transition_plugins: dict[str, Any] = {}
        #: the statistical profiler and RSS history (`shoal.profile`), started with the worker
        self.profiler: profile_mod.Sampler | None = None
        self.registered_versions: dict = {}
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

    async def _start(self) -> Worker:
        """Listen, connect to the scheduler and serve (`Server.start` wraps it: a failure
        closes and raises)."""
        self.loop = self.completions.loop = self.actor_results.loop = asyncio.get_running_loop()
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
        #: the package versions this worker registers with (and reports: `versions`)
        self.registered_versions = get_versions()
        info = {"role": "worker", "id": self.id, "versions": self.registered_versions}
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
                self.local_directory, self.registered_versions, self.nanny,
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
            "worker", targets, memory=True, stop_code=TASK_FRAME_CODE, skip_files=_PROFILE_SKIP,
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

    async def _handle_comm(self, comm: Any) -> None:
        peer = Peer(comm, self.handlers, self._on_peer_messages, accepts=_from_peer)
        try:
            await peer.run()
        finally:
            await peer.close()

def _fmt(n: int) -> str:
    from dask.utils import format_bytes

    return format_bytes(n)



def _from_scheduler(peer: Peer, msgs: list[m.Message]) -> str | None:
    """The scheduler's connection carries the scheduler's messages and worker calls."""
    return check_packet(msgs, WORKER_REQUESTS, m.SCHEDULER, "a worker's scheduler connection")


def _from_peer(peer: Peer, msgs: list[m.Message]) -> str | None:
    """Other connections carry peer messages (actors) and worker calls."""
    return check_packet(msgs, WORKER_REQUESTS, m.PEER, "a worker from a peer")
