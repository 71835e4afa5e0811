"""The scheduler's I/O shell: connections in, events to the state machine, messages out.

It decides nothing. A packet from a client or worker becomes one batch of events for
`SchedulerState.handle_stimulus`; the returned instructions are sent to the peers they
name (each connection coalesces what is sent in one loop tick into one packet). It also
answers read-only queries (`who_has`, `identity`, ...) and relays `run` calls to workers.
Task specs, results and exceptions pass through as opaque `Pickled` values; the only user
code the scheduler ever unpickles is what an authenticated client sends to run there: a
function for `run_on_scheduler`, or a scheduler plugin (`plugins.py`).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import logging
import time
import uuid
from typing import Any

import msgpack

from shoal import config, log_buffer, secret_files
from shoal import config as _config
from shoal.comm import listen
from shoal.comm.addressing import is_loopback_address, parse_address
from shoal.protocol import messages as m
from shoal.protocol.requests import REQUESTS, check_request
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.rpc import Peer
from shoal.rpc.server import Server
from shoal.scheduler import adaptive
from shoal.scheduler.admin import AdminServer
from shoal.scheduler.datasets import DatasetServer
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, RemoveClient, RemoveWorker, Restart, WorkerMsg
from shoal.scheduler.extension import call_hook, overridden_hooks
from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.scheduler.liveness import check_interval, expired, parse_ttl
from shoal.scheduler.plugins import PluginHost
from shoal.scheduler.memory_sampler import MemorySamplers
from shoal.scheduler.profiling import ProfileServer
from shoal.scheduler.topics import EventLog
from shoal.scheduler.watches import WatchServer
from shoal.scheduler.state import FIRE_AND_FORGET, SchedulerState
from shoal.sync.server import SyncServer
from shoal.utils import plural
from shoal.versions import get_versions

logger = logging.getLogger("shoal.scheduler")

#: graphs with at least this many tasks are ingested with the cyclic GC paused
LARGE_GRAPH = 10_000


def _blocked_handler(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            f"The {name!r} handler has been explicitly disallowed in Scheduler, possibly due to security concerns."
        )

    return refuse


class Scheduler(Server):
    """A scheduler server. `await Scheduler(...)` or `async with` starts it (the life
    cycle, background tasks and extension hosting are `shoal.rpc.server.Server`'s)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        secret: bytes | None = None,
        insecure: bool = False,
        validate: bool | None = None,
        dashboard_address: Any = None,
        plugins: Any = (),
        host: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
        config: dict | None = None,
        blocked_handlers: Any = None,
    ):
        """`address` (``"tcp://127.0.0.1:0"`` by default), or distributed's `host`, `port`
        and `protocol` to build it; `config`: dask configuration (``{"shoal.scheduler.
        allowed-failures": 5}``, ...) in force while the scheduler is built; handlers
        named in `blocked_handlers` (and ``shoal.scheduler.blocked-handlers``) refuse
        every request."""
        if config:
            import dask.config

            with dask.config.set(config):
                self.__init__(  # type: ignore[misc]
                    address, secret=secret, insecure=insecure, validate=validate,
                    dashboard_address=dashboard_address, plugins=plugins, host=host, port=port,
                    protocol=protocol, blocked_handlers=blocked_handlers,
                )  # fmt: skip
            return
        config = _config
        if address is None:
            scheme = (protocol or "tcp").removesuffix("://")
            where = f"{host or '127.0.0.1'}:{port or 0}"
            address = "inproc://" if scheme == "inproc" else f"{scheme}://{where}"
        elif host is not None or port is not None:
            raise ValueError("give either address= or host=/port=/protocol=, not both")
        self._blocked = set(blocked_handlers or ()) | set(config.get("scheduler.blocked-handlers", None) or ())
        super().__init__("scheduler")
        self._requested_address = address
        #: where the web dashboard listens (`":8787"`, `"host:port"`, a port; None/False: none)
        self.dashboard_address = dashboard_address
        self.dashboard: Any = None
        self.secret = secret
        self.insecure = insecure
        self.id = f"Scheduler-{uuid.uuid4()}"
        self.state = SchedulerState(
            clock=time.monotonic,
            queue_seconds=float(config.get("scheduler.worker-queue-seconds")),
            queue_max_per_thread=int(config.get("scheduler.worker-queue-max-per-thread")),
            unknown_task_duration=config.get_timedelta("scheduler.unknown-task-duration"),
            allowed_failures=int(config.get("scheduler.allowed-failures")),
            validate=bool(config.get("scheduler.validate")) if validate is None else validate,
        )
        self.started = time.time()
        self.listener: Any = None
        #: a second, in-process listener (`inproc://`) beside a network one: clients in
        #: this process (a `LocalCluster`'s) connect there and hand messages over as
        #: objects, so a graph's task specs are neither encoded, copied through the
        #: kernel nor decoded on their way to the scheduler
        self.local_listener: Any = None
        self.clients: dict[str, Peer] = {}
        self.workers: dict[str, Peer] = {}
        #: nanny id -> its connection (nannies connect to the scheduler; they do not listen)
        self.nannies: dict[str, Peer] = {}
        #: why a worker is about to go away (told by its nanny), used when it disconnects
        self._exit_reasons: dict[str, str] = {}
        #: worker address -> the metrics of its last heartbeat (memory, spilled, ...)
        self.worker_metrics: dict[str, dict] = {}
        #: why the scheduler stopped by itself (a fatal error), if it did
        self.status_reason: str | None = None
        self._sid = itertools.count()
        self._workers_changed = asyncio.Event()
        self._gc_frozen = False
        self.handlers.update({
            "identity": self._identity,
            "who_has": self._who_has,
            "has_what": self._has_what,
            "nthreads": self._nthreads,
            "processing": self._processing,
            "ncores_running": self._nthreads,
            "run_on_scheduler": self._run_on_scheduler,
            "broadcast": self._broadcast,
            "story": self._story,
            "task_spec": self._task_spec,
            "get_task_stream": self._get_task_stream,
            "log_event": self._log_event,
            "get_events": self._get_events,
            "subscribe_topic": self._subscribe_topic,
            "unsubscribe_topic": self._unsubscribe_topic,
            "register_nanny": self._register_nanny,
            "worker_exit_reason": self._worker_exit_reason,
            "restart": self._restart,
            "restart_workers": self._restart_workers,
            "terminate": self._terminate,
            "adaptive_target": self._adaptive_target,
            "workers_to_close": self._workers_to_close,
            "heartbeat": self._heartbeat,
        })
        #: seconds a worker may stay silent before it is removed (None: never)
        self.worker_ttl = parse_ttl(config.get("scheduler.worker-ttl"))
        self.event_log = EventLog(int(config.get("scheduler.events-log-length")))
        #: hook name -> [(extension name, extension)] of the extensions that implement it
        self._extension_hooks: dict[str, list[tuple[str, Any]]] = {}
        self.sync = self.add_extension("sync", SyncServer(self))
        self.datasets = self.add_extension("datasets", DatasetServer(self))
        self.admin = self.add_extension("admin", AdminServer(self))
        #: scheduler plugins (`Scheduler.plugins`) and the nanny plugins the scheduler keeps
        self.plugin_host = self.add_extension("plugins", PluginHost(self))
        self._initial_plugins = list(plugins or ())
        self.profiling = self.add_extension("profiling", ProfileServer(self))
        self.memory_samplers = self.add_extension("memory_samplers", MemorySamplers(self))
        #: open progress bars and task-metadata collections (`watches.py`)
        self.watches = self.add_extension("watches", WatchServer(self))
        from shoal.shuffle.scheduler import ShuffleSchedulerExtension

        self.shuffle = self.add_extension("shuffle", ShuffleSchedulerExtension(self))

    # ------------------------------------------------------------------ the extension door

    def add_extension(self, name: str, extension: Any) -> Any:
        """Host `extension` under `name` (see `shoal.scheduler.extension`): register its
        request handlers and call its hooks from now on. Returns the extension."""
        super().add_extension(name, extension)
        for hook in overridden_hooks(extension):
            self._extension_hooks.setdefault(hook, []).append((name, extension))
        return extension

    def _call_extensions(self, hook: str, *args: Any) -> None:
        for name, extension in self._extension_hooks.get(hook, ()):
            call_hook(name, extension, hook, *args)

    def new_stimulus_id(self, prefix: str) -> str:
        """A stimulus id unique in this scheduler, e.g. ``"publish-17"``."""
        return f"{prefix}-{next(self._sid)}"

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        if self.listener is None:
            raise ValueError("the scheduler has not started")
        return self.listener.address

    @property
    def local_address(self) -> str | None:
        """The in-process address clients in this process may use instead of `address`
        (None before start, or when `address` is in-process itself)."""
        return self.local_listener.address if self.local_listener is not None else None

    async def start(self) -> Scheduler:
        """Listen and serve; a failure closes what started and raises
        ``RuntimeError("Scheduler failed to start: ...")`` chaining the cause, as in
        distributed."""
        if self.status == "running":
            return self
        try:
            return await self._start()
        except Exception as e:
            await self.close()
            raise RuntimeError(f"Scheduler failed to start: {e}") from e

    def _block_handlers(self) -> None:
        for name in self._blocked:
            if name in self.handlers:
                self.handlers[name] = _blocked_handler(name)

    async def _start(self) -> Scheduler:
        self._block_handlers()
        if self.secret is None and not self.insecure and not is_loopback_address(self._requested_address):
            raise ValueError(
                f"refusing to listen on {self._requested_address} without authentication: "
                "pass a shared secret (security) or insecure=True"
            )
        self.listener = await listen(
            self._requested_address,
            self._handle_comm,
            secret=self.secret,
            info={"role": "scheduler", "id": self.id, "versions": get_versions()},
        )
        if parse_address(self.listener.address)[0] != "inproc":
            from shoal.comm.inproc import new_address

            self.local_listener = await listen(new_address(), self._handle_comm, info=self.listener.info)
        self.status = "running"
        self.loop = asyncio.get_running_loop()
        # this user's clients find the secret by address (shoal.secret_files)
        secret_files.remember(self.listener.address, self.secret)
        await self.start_extensions()
        log_buffer.install()
        if self.worker_ttl is not None:
            self.spawn(self._watch_worker_ttl(self.worker_ttl))
        logger.info("Scheduler at %s", self.address)
        for plugin in self._initial_plugins:
            name = getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4()}"
            await self.plugin_host.add(plugin, name)
        await self._start_dashboard()
        return self

    @property
    def plugins(self) -> dict[str, Any]:
        """The scheduler plugins, by name."""
        return self.plugin_host.plugins

    async def _start_dashboard(self) -> None:
        from shoal.dashboard import Dashboard, parse_dashboard_address

        scheme, loc = parse_address(self.address)
        host = "127.0.0.1" if scheme == "inproc" else loc.rsplit(":", 1)[0].strip("[]")
        where = parse_dashboard_address(self.dashboard_address, host)
        if where is None:
            return
        dashboard = Dashboard(self)
        try:
            await dashboard.start(*where)
        except BaseException:
            await self.close()
            raise
        self.dashboard = dashboard

    @property
    def dashboard_link(self) -> str:
        """The dashboard's status page (`shoal.dashboard.link`), or "" without a dashboard."""
        return self.dashboard.link if self.dashboard is not None else ""

    async def close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        if self.dashboard is not None:
            await self.dashboard.close()
        if self.listener is not None:
            secret_files.forget(self.listener.address, self.secret)
        for listener in (self.listener, self.local_listener):
            if listener is not None:
                await listener.stop()
        await self.close_extensions()
        peers = list(self.clients.values()) + list(self.workers.values()) + list(self.nannies.values())
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        await self.background.close()
        self.closed()

    async def workers_changed(self, timeout: float | None = None) -> None:
        """Wait until a worker joins or leaves, at most `timeout` seconds (no error on
        timeout: callers re-check their condition)."""
        self._workers_changed.clear()
        try:
            await asyncio.wait_for(self._workers_changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def set_exit_reason(self, address: str, reason: str) -> None:
        """Why worker `address` is about to leave, logged and told when it disconnects."""
        if address in self.workers:
            self._exit_reasons[address] = reason

    async def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.state.workers) < n:
            self._workers_changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"only {len(self.state.workers)}/{n} workers arrived")
            try:
                await asyncio.wait_for(self._workers_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ connections

    async def _handle_comm(self, comm: Any) -> None:
        peer = Peer(comm, self.handlers, self._on_messages, accepts=self._accepts)
        try:
            await peer.run()
        finally:
            await self._peer_gone(peer)

    async def _peer_gone(self, peer: Peer) -> None:
        if peer.role == "client" and self.clients.get(peer.ident) is peer:
            del self.clients[peer.ident]
            sid = self.new_stimulus_id("client-gone")
            self.stimulate(RemoveClient(sid, peer.ident))
            self.log_event("all", {"action": "remove-client", "client": peer.ident})
            self.event_log.unsubscribe(peer.ident)
            self.event_log.forget(peer.ident)  # nothing of a client outlives its connection
            self._call_extensions("remove_client", peer.ident, sid)
        elif peer.role == "worker" and self.workers.get(peer.ident) is peer:
            del self.workers[peer.ident]
            self.worker_metrics.pop(peer.ident, None)
            reason = self._exit_reasons.pop(peer.ident, "connection closed")
            sid = self.new_stimulus_id("worker-gone")
            self.stimulate(RemoveWorker(sid, peer.ident, reason))
            self._call_extensions("remove_worker", peer.ident, reason, sid)
            self._workers_changed.set()
            logger.info("Remove worker %s (%s)", peer.ident, reason)
            self.log_event(["all", peer.ident], {"action": "remove-worker", "worker": peer.ident, "reason": reason})
        elif peer.role == "nanny" and self.nannies.get(peer.ident) is peer:
            del self.nannies[peer.ident]
        try:
            await peer.close()
        except Exception:  # pragma: no cover
            pass

    def _registered(self, peer: Peer) -> Peer | None:
        """The connection registered under this peer's role and identity, if any."""
        registry = {"client": self.clients, "worker": self.workers, "nanny": self.nannies}.get(peer.role or "")
        return None if registry is None else registry.get(peer.ident)

    def _accepts(self, peer: Peer, msgs: list[m.Message]) -> str | None:
        """Why this decoded packet may not be handled (None: it may): each message must
        be one the peer's role may send, a request one its role may call with arguments
        of the right types (`shoal.protocol.requests`), and a registration must come
        first and once. Checked for the whole packet before any of it is handled."""
        role, ident = peer.role, peer.ident
        for msg in msgs:
            t = type(msg)
            if t is m.Request:
                kwargs = msg.kwargs
                if kwargs:
                    problem = check_request(msg.name, kwargs, role)
                    if problem is not None:
                        return problem
                elif role is None and msg.name not in REQUESTS:
                    return f"operation {msg.name!r} before saying who it is"
                elif msg.name in REQUESTS and role not in REQUESTS[msg.name].roles:
                    return f"a {role or 'connection that has not registered'} may not call {msg.name!r}"
                if msg.name == "register_nanny":
                    role = "nanny"
            elif t is m.Reply:
                continue
            elif msg.sender != role:
                if role is None and t is m.RegisterClient:
                    if msg.client_id in self.clients or msg.client_id == FIRE_AND_FORGET:
                        return f"client id {msg.client_id!r} is already registered"
                    role, ident = "client", msg.client_id
                elif role is None and t is m.RegisterWorker:
                    if msg.address in self.workers:
                        return f"worker {msg.address} registered twice"
                    role, ident = "worker", msg.address
                else:
                    return f"a {role or 'connection that has not registered'} may not send {msg.op!r}"
            elif t is m.RegisterClient or t is m.RegisterWorker:
                return f"{msg.op!r} on a connection that already registered"
            elif t is m.UpdateGraph:
                nf = len(msg.funcs)
                for task in msg.tasks:
                    if task[1] >= nf:
                        return f"task {task[0]!r} names function {task[1]} of {nf}"
            elif t is m.DesireKeys and msg.client_id != ident and msg.client_id != FIRE_AND_FORGET:
                return f"desire-keys for another client {msg.client_id!r}"
        return None

    def _on_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        sid = f"{peer.role or 'peer'}-{next(self._sid)}"
        events: list[Any] = []
        arrivals: list[Any] = []
        role = peer.role
        if role is not None and peer.closed and self._registered(peer) is not peer:
            return  # delivered late (after a request of its packet), after the peer left
        for msg in msgs:
            if role == "worker":
                events.append(WorkerMsg(sid, peer.ident, msg))
            elif role == "client":
                events.append(ClientMsg(sid, peer.ident, msg))
            elif type(msg) is m.RegisterClient:
                peer.role, peer.ident = "client", msg.client_id
                role = "client"
                self.clients[msg.client_id] = peer
                events.append(AddClient(sid, msg.client_id))
                arrivals.append(events[-1])
                self.log_event(["all", msg.client_id], {"action": "add-client", "client": msg.client_id})
            elif type(msg) is m.RegisterWorker:
                peer.role, peer.ident = "worker", msg.address
                role = "worker"
                self.workers[msg.address] = peer
                logger.info("Register worker %s (%s)", msg.address, plural(msg.nthreads, "thread"))
                if self.admin.admit_worker(msg.address, lambda msg=msg, sid=sid: self._admit(sid, msg)):
                    continue  # admitted once it ran the worker setups
                events.append(AddWorker(sid, msg))
                arrivals.append(events[-1])
                self._workers_changed.set()
                self.log_event(["all", msg.address], {"action": "add-worker", "worker": msg.address})
            else:
                logger.warning("message %s from %s before it said who it is; dropped", msg.op, peer.address)
        if events:
            try:
                self.stimulate(*events)
            except Exception as e:
                peer.reject(f"its messages made the state machine fail: {e!r}")
                return
            if self.plugin_host.wants("update_graph"):
                self._fire_update_graph(events)
            if arrivals:
                self._extension_events(arrivals)

    def _fire_update_graph(self, events: list[Any]) -> None:
        """The scheduler plugins' `update_graph` hook for the graphs of these (just
        handled) events."""
        host = self.plugin_host
        for ev in events:
            if type(ev) is ClientMsg and type(ev.msg) is m.UpdateGraph:
                msg = ev.msg
                annotations: dict[str, dict] = {}
                for key, _, _, _, _, ann in msg.tasks:
                    for name, value in (ann or {}).items():
                        annotations.setdefault(name, {})[key] = value
                host.fire(
                    "update_graph", self, client=ev.client_id, keys=set(msg.wanted),
                    tasks=[t[0] for t in msg.tasks], annotations=annotations,
                    priority={t[0]: tuple(t[4]) for t in msg.tasks}, stimulus_id=ev.stimulus_id,
                )  # fmt: skip

    def _extension_events(self, events: list[Any]) -> None:
        """The extensions' `add_worker` / `add_client` hooks for these (handled) events."""
        for ev in events:
            if type(ev) is AddWorker:
                self._call_extensions("add_worker", ev.msg.address, ev.stimulus_id)
            elif type(ev) is AddClient:
                self._call_extensions("add_client", ev.client_id, ev.stimulus_id)

    def _admit(self, sid: str, msg: m.RegisterWorker) -> None:
        events = [AddWorker(sid, msg)]
        self.stimulate(*events)
        self._workers_changed.set()
        self.log_event(["all", msg.address], {"action": "add-worker", "worker": msg.address})
        self._extension_events(events)

    def stimulate(self, *events: Any) -> None:
        """Hand `events` (`shoal.scheduler.events`) to the state machine and send the
        messages it answers with: the one way anything changes the scheduler's state.
        A handler that raises: see `_stimulus_failed`."""
        clients = self.clients
        if any(type(ev) is ClientMsg and ev.client_id not in clients and ev.client_id != FIRE_AND_FORGET for ev in events):
            # a client that left is gone for good: nothing it sent late may register it again
            events = tuple(ev for ev in events if type(ev) is not ClientMsg or ev.client_id in clients or ev.client_id == FIRE_AND_FORGET)
            if not events:
                return
        big = gc.isenabled() and any(
            type(ev) is ClientMsg and type(ev.msg) is m.UpdateGraph and len(ev.msg.tasks) >= LARGE_GRAPH
            for ev in events
        )
        if big:
            # The cyclic GC rescans every live record while a big graph is ingested (2-3x
            # slower); pause it, then freeze the survivors so later collections skip them.
            gc.disable()
        try:
            instructions = self.state.handle_stimulus(*events)
        except Exception as exc:
            self._stimulus_failed(events, exc)
            raise
        finally:
            if big:
                gc.enable()
                gc.freeze()
                self._gc_frozen = True
        if self._gc_frozen and not self.state.tasks:
            gc.unfreeze()  # idle again: let frozen garbage be collected
            self._gc_frozen = False
        self._send_instructions(instructions)

    def _send_instructions(self, instructions: list) -> None:
        clients, workers = self.clients, self.workers
        for inst in instructions:
            if type(inst) is ToWorker:
                peer = workers.get(inst.address)
            elif type(inst) is ToClient:
                peer = clients.get(inst.client_id)
            else:  # pragma: no cover
                raise TypeError(inst)
            if peer is not None and not peer.closed:
                peer.send(inst.msg)

    def _stimulus_failed(self, events: list[Any], exc: Exception) -> None:
        """A handler of the state machine raised (a bug: valid input never does). If the
        state still passes `validate_state`, what was applied stands and its messages go
        out (`instructions_after_failure`); the rest of the stimulus is refused (the
        caller disconnects the peer that sent it, and that removal re-derives all the
        peer was part of) and the scheduler goes on. Otherwise it stops with a fatal
        error rather than run on a state it cannot trust."""
        st = self.state
        kinds = [type(e).__name__ for e in events]
        try:
            st.validate_state()
            instructions = st.instructions_after_failure(events[-1].stimulus_id if events else "")
        except Exception as invalid:
            st._out.clear()
            st._free_on.clear()
            logger.critical(
                "FATAL: the scheduler state machine failed on %s (%r) and left an invalid state (%s); "
                "the scheduler is closing", kinds, exc, str(invalid).splitlines()[0], exc_info=exc,
            )  # fmt: skip
            self.status_reason = f"fatal: state machine failed on {kinds}: {exc!r}"
            if self.status == "running":
                self.spawn(self.close())
            return
        self._send_instructions(instructions)
        logger.error(
            "scheduler state machine failed on %s; the stimulus was refused (what it had applied stands), state is valid",
            kinds, exc_info=exc,
        )  # fmt: skip

    # ------------------------------------------------------------------ queries

    def identity(self) -> dict:
        st = self.state
        workers = {}
        for ws in st.workers.values():
            workers[ws.address] = {
                "type": "Worker",
                "id": ws.name,
                "host": ws.host,
                "name": ws.name,
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "resources": ws.resources,
                "local_directory": ws.local_directory,
                "nanny": ws.nanny,
                "pid": ws.pid,
                "status": "paused" if ws.paused else "running",
                "services": {},
                "last_seen": time.time(),
                "metrics": self.metrics_of(ws),
            }
        return {
            "type": "Scheduler",
            "id": self.id,
            "address": self.address,
            "services": {"dashboard": self.dashboard.port} if self.dashboard is not None else {},
            "started": self.started,
            "n_workers": len(workers),
            "total_threads": sum(w["nthreads"] for w in workers.values()),
            "total_memory": sum(w["memory_limit"] or 0 for w in workers.values()),
            "workers": workers,
        }

    def metrics_of(self, ws: Any) -> dict:
        """A worker's figures as distributed's users know them: `memory` (process RSS),
        `managed_bytes` (results held, on disk too), `spilled_bytes` (`memory`: their
        in-memory size, `disk`: bytes on disk), and the split of process memory into
        `managed` (in memory), `unmanaged` (RSS minus that) and `spilled`."""
        reported = self.worker_metrics.get(ws.address) or {}
        managed_total = ws.nbytes
        spilled = reported.get("spilled_bytes") or {"memory": 0, "disk": 0}
        rss = reported.get("memory", 0)
        managed = max(managed_total - spilled.get("memory", 0), 0)
        out = dict(reported)
        out.update(
            executing=len(ws.processing), in_memory=len(ws.has_what), memory=rss, managed_bytes=managed_total,
            spilled_bytes=spilled, managed=managed, unmanaged=max(rss - managed, 0), spilled=spilled.get("memory", 0),
        )  # fmt: skip
        return out

    async def _identity(self, peer: Peer, n_workers: int = -1) -> dict:
        info = self.identity()
        if n_workers is not None and n_workers >= 0:
            info["workers"] = dict(list(info["workers"].items())[:n_workers])
        return info

    async def _who_has(self, peer: Peer, keys: Any = None) -> dict:
        tasks = self.state.tasks
        if keys is None:
            keys = list(tasks)
        out = {}
        for key in keys:
            ts = tasks.get(key)
            out[key] = [w.address for w in ts.who_has] if ts is not None else []
        return out

    def select_workers(self, workers: Any) -> list:
        """The `SchedWorker`s named by `workers` (addresses or names; None: all), in
        that order; unknown names are skipped."""
        st = self.state
        if workers is None:
            return list(st.workers.values())
        out = []
        for w in workers:
            ws = st.workers.get(w)
            if ws is None:
                ws = next((x for x in st.workers.values() if x.name == w or str(x.name) == str(w)), None)
            if ws is not None:
                out.append(ws)
        return out

    async def _has_what(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: [ts.key for ts in ws.has_what] for ws in self.select_workers(workers)}

    async def _nthreads(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: ws.nthreads for ws in self.select_workers(workers)}

    async def _processing(self, peer: Peer, workers: Any = None) -> dict:
        return {ws.address: [ts.key for ts in ws.processing] for ws in self.select_workers(workers)}

    async def _story(self, peer: Peer, keys: Any = ()) -> list:
        return [list(e) for e in self.state.story(*keys)]

    async def _task_spec(self, peer: Peer, key: Any, blame: bool = False) -> dict:
        """A task's opaque spec and its dependencies (those still known), for replaying it
        locally; with `blame`, the task whose failure `key` inherits."""
        ts = self.state.tasks.get(key)
        if ts is None:
            raise KeyError(f"task {key!r} is not known to the scheduler (released or never submitted)")
        if blame and ts.exception_blame is not None:
            ts = ts.exception_blame
        if ts.spec is None:
            raise ValueError(f"{ts.key!r} is data placed by a client: there is no task to run")
        known = self.state.tasks
        return {
            "key": ts.key,
            "func": ts.func,
            "spec": ts.run_spec,
            "deps": [d.key for d in ts.dependencies],
            "missing": [d.key for d in ts.dependencies if known.get(d.key) is not d],
        }

    async def _run_on_scheduler(self, peer: Peer, function: Pickled, args: Pickled, wait: bool = True) -> Pickled:
        func = loads(function)
        a, kw = loads(args)
        if "dask_scheduler" in _params(func):
            kw["dask_scheduler"] = self
        result = func(*a, **kw)
        if inspect.isawaitable(result):
            if not wait:
                self.spawn(result)
                return dumps(None)
            result = await result
        return dumps(result)

    # ------------------------------------------------------------------ adaptive scaling

    def adaptive_target(self, target_duration: float = 5.0) -> int:
        """Workers the current work needs (`scheduler.adaptive.adaptive_target`)."""
        st = self.state
        workers = st.workers.values()
        n_pending = st.n_queued + len(st.unrunnable) + sum(len(ws.processing) for ws in workers)
        return adaptive.adaptive_target(
            n_pending, st.avg_duration, target_duration, len(st.workers), sum(ws.nthreads for ws in workers),
            sum(ws.nbytes for ws in workers), sum(ws.memory_limit or 0 for ws in workers),
        )  # fmt: skip

    def workers_to_close(self, target: int | None = None, n: int | None = None, attribute: str = "address") -> list:
        """Idle workers to close to come down to `target` workers (or `n` fewer; by default
        every idle worker), least data first, as addresses or (`attribute="name"`) names."""
        st = self.state
        if target is None:
            target = len(st.workers) - n if n is not None else 0
        chosen = adaptive.workers_to_close(
            [(ws.address, len(ws.processing), ws.nbytes, len(ws.has_what)) for ws in st.workers.values()], target
        )
        if attribute == "name":
            return [st.workers[a].name for a in chosen]
        return chosen

    async def retire_workers(self, workers: Any = None, **kwargs: Any) -> dict:
        """Move the data only these workers hold elsewhere, then close them (`admin.retire_workers`)."""
        return await self.admin.retire_workers(None, workers=workers, **kwargs)

    async def get_worker_logs(self, n: int | None = None, workers: Any = None, nanny: bool = False) -> dict:
        return await self.admin.get_worker_logs(None, n=n, workers=workers, nanny=nanny)

    async def _adaptive_target(self, peer: Peer, target_duration: float = 5.0) -> int:
        return self.adaptive_target(target_duration)

    async def _workers_to_close(
        self, peer: Peer, target: int | None = None, n: int | None = None, attribute: str = "address"
    ) -> list:
        return self.workers_to_close(target=target, n=n, attribute=attribute)

    # ------------------------------------------------------------------ nannies, restart, events

    async def _register_nanny(self, peer: Peer, nanny_id: str) -> dict:
        """Register a nanny; it gets the nanny plugins to set up before its worker starts."""
        if peer.role is not None:
            raise ValueError(f"this connection already registered as a {peer.role}")
        peer.role, peer.ident = "nanny", nanny_id
        self.nannies[nanny_id] = peer
        return {"plugins": list(self.plugin_host.nanny_plugins.items())}

    async def _worker_exit_reason(self, peer: Peer, worker: str, reason: str) -> None:
        if worker in self.workers:
            self._exit_reasons[worker] = reason

    def forget_all_tasks(self) -> str:
        """Cancel every task for every client (reason `scheduler-restart`, the `Restart`
        event): the scheduler forgets them all; clients drop their futures. Returns the
        stimulus id."""
        sid = self.new_stimulus_id("restart")
        self.stimulate(Restart(sid))
        marker = m.CancelledKeys((), m.RESTART_REASON, m.RESTART_MSG)  # "forget all your futures"
        for peer in list(self.clients.values()):
            if not peer.closed:
                peer.send(marker)
        return sid

    async def restart(self, timeout: float = 30.0, wait_for_workers: bool = True) -> None:
        """Forget all tasks, then `restart_workers` on every worker."""
        logger.info("Restarting all workers and forgetting all tasks")
        sid = self.forget_all_tasks()
        self._call_extensions("restart", sid)
        await self.restart_workers(None, timeout=timeout, wait_for_workers=wait_for_workers)
        self.log_event("all", {"action": "restart"})

    async def restart_workers(
        self,
        workers: list[str] | None = None,
        timeout: float = 30.0,
        wait_for_workers: bool = True,
        on_error: str = "raise",
    ) -> dict[str, str]:
        """Restart these workers (addresses; all when None) through their nannies; workers
        without one are shut down ("removed"). With `wait_for_workers`, return once none of
        the old workers is left and the restarted ones are back. Returns `{address: "OK" |
        "removed" | "timed out"}`; with `on_error="raise"` a nanny that does not restart its
        worker in time is a `TimeoutError`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        n_before = len(self.state.workers)
        targets = list(self.state.workers) if workers is None else [w for w in workers if w in self.state.workers]
        by_nanny: dict[str, list[str]] = {}
        out: dict[str, str] = {}
        for addr in targets:
            ws = self.state.workers[addr]
            if ws.nanny and ws.nanny in self.nannies:
                by_nanny.setdefault(ws.nanny, []).append(addr)
            else:
                out[addr] = "removed"
        if out:
            logger.warning("Workers %s do not use a nanny and will be shut down without restarting them", list(out))
            for addr in out:
                self._exit_reasons[addr] = "restart without a nanny"
                wpeer = self.workers.get(addr)
                if wpeer is not None:
                    await wpeer.close()

        async def restart_one(nanny_id: str) -> None:
            request = self.nannies[nanny_id].request("restart", reason="restart-workers", timeout=timeout)
            await asyncio.wait_for(request, max(0.0, deadline - loop.time()))

        results = await asyncio.gather(*(restart_one(n) for n in by_nanny), return_exceptions=True)
        failed: list[str] = []
        for nanny_id, result in zip(by_nanny, results):
            for addr in by_nanny[nanny_id]:
                out[addr] = "timed out" if isinstance(result, BaseException) else "OK"
                if isinstance(result, BaseException):
                    failed.append(addr)
                    wpeer = self.workers.get(addr)
                    if wpeer is not None:  # make sure no old worker stays connected
                        await wpeer.close()
        self.log_event("all", {"action": "restart-workers", "workers": targets})
        if failed and on_error == "raise":
            raise TimeoutError(f"{len(failed)}/{len(by_nanny)} nanny worker(s) did not restart within {timeout}s: {failed}")
        expected = n_before - (len(out) - sum(v == "OK" for v in out.values()))
        # the old workers' connections close as their processes die
        while any(a in self.state.workers for a in targets) or (
            wait_for_workers and len(self.state.workers) < expected
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                back = len([a for a in self.state.workers if a not in targets])
                raise TimeoutError(
                    f"Waited for {len(targets)} worker(s) to reconnect after restarting, but after "
                    f"{timeout}s only {back} have returned. Consider a longer timeout, or "
                    "`wait_for_workers=False`."
                )
            await self.workers_changed(remaining)
        return out

    async def _restart(self, peer: Peer, timeout: float = 30.0, wait_for_workers: bool = True) -> None:
        await self.restart(timeout=timeout, wait_for_workers=wait_for_workers)

    async def _restart_workers(
        self, peer: Peer, workers: list[str], timeout: float = 30.0, on_error: str = "raise"
    ) -> dict[str, str]:
        return await self.restart_workers(workers, timeout=timeout, on_error=on_error)

    async def _terminate(self, peer: Peer) -> None:
        """Close the scheduler (after answering): its workers and nannies close with it."""
        logger.info("Scheduler closing at the request of %s", peer.ident)
        asyncio.get_running_loop().call_soon(lambda: self.spawn(self.close()))

    def _heartbeat(self, peer: Peer, metrics: Any = None) -> None:
        """A worker saying it is alive (the packet itself updates `peer.last_seen`), with
        its memory figures (see `Worker.metrics`)."""
        if peer.role == "worker" and type(metrics) is dict and self.workers.get(peer.ident) is peer:
            self.worker_metrics[peer.ident] = metrics

    async def _watch_worker_ttl(self, ttl: float) -> None:
        """Remove workers not heard from for `ttl` seconds (see `liveness.py`)."""
        interval = check_interval(ttl)
        while self.status == "running":
            await asyncio.sleep(interval)
            now = time.monotonic()
            silent = expired({addr: peer.last_seen for addr, peer in self.workers.items()}, now, ttl)
            for addr in silent:
                peer = self.workers[addr]
                reason = f"worker-ttl: not heard from for {now - peer.last_seen:.1f} s (worker-ttl {ttl:g} s)"
                logger.warning("Removing worker %s: %s", addr, reason)
                self._exit_reasons[addr] = reason
                self.spawn(self._peer_gone(peer))

    async def _broadcast(self, peer: Peer, name: str, kwargs: dict, workers: Any = None) -> dict:
        return await self.broadcast(name, workers, **kwargs)

    async def broadcast(self, op: str, workers: Any = None, **kwargs: Any) -> dict:
        """Call worker operation `op` with `kwargs` on each worker of `workers` (addresses
        or names; None: all); return `{address: (ok, value)}` as the workers sent it (a
        worker that is gone or fails to answer: `(False, Pickled OSError)`)."""
        name = op
        targets = [ws.address for ws in self.select_workers(workers)]

        async def one(addr: str) -> tuple:
            wpeer = self.workers.get(addr)
            if wpeer is None:
                return (False, dumps(OSError(f"worker {addr} is gone")))
            try:
                reply = await wpeer.request_raw(name, **kwargs)
                return (reply.ok, reply.value)
            except Exception as e:
                return (False, dumps(OSError(f"worker {addr} failed to answer: {e}")))

        results = await asyncio.gather(*(one(a) for a in targets))
        return dict(zip(targets, results))


    async def _get_task_stream(self, peer: Peer, **kwargs: Any) -> dict:
        return await self.get_task_stream(**kwargs)

    async def get_task_stream(
        self, start: float | None = None, stop: float | None = None, count: int | None = None,
        since: dict | None = None,
    ) -> dict:
        """The task stream, fetched on demand from every worker's ring buffer (nothing is
        collected per task on the scheduler): records sorted by the end of their compute,
        at most the newest `count`; `since` ({worker: index}, from an earlier call's
        `counts`) keeps only records added after that call; `dropped` ({worker: n}) counts
        records in range that a worker's ring buffer no longer held. Workers that left took
        their records with them."""

        async def one(addr: str, wpeer: Peer) -> tuple[str, dict | None]:
            mark = None if since is None else since.get(addr, 0)
            try:
                reply = await wpeer.request("task_stream", since=mark, start=start, stop=stop, count=count)
            except Exception as e:
                logger.info("no task stream from %s: %s", addr, e)
                return addr, None
            return addr, reply

        replies = await asyncio.gather(*(one(a, p) for a, p in list(self.workers.items())))
        counts = {}
        dropped = {}
        oldest = {}
        records: list = []
        for addr, reply in replies:
            if reply is not None:
                counts[addr] = reply["count"]
                if reply.get("dropped"):
                    dropped[addr], oldest[addr] = reply["dropped"], reply.get("oldest")
                records.extend(reply["records"])
        records.sort(key=lambda r: r["startstops"][-1]["stop"])
        if count is not None:
            records = records[-count:] if count > 0 else []
            if len(records) == count:  # a worker's evicted records ended before its oldest
                cutoff = records[0]["startstops"][-1]["stop"] if records else float("inf")
                dropped = {a: n for a, n in dropped.items() if oldest[a] is not None and oldest[a] > cutoff}
        return {"counts": counts, "records": records, "dropped": dropped}


    # ------------------------------------------------------------------ events

    def log_event(self, topic: Any, msg: Any) -> None:
        """Log `msg` under `topic` (a name or a list of names) and push it to subscribers."""
        clients = self.clients
        if self.plugin_host.wants("log_event"):
            for name in [topic] if isinstance(topic, str) else topic:
                self.plugin_host.fire("log_event", name, msg)
        for client_id, name, event in self.event_log.log(topic, msg, time.time()):
            peer = clients.get(client_id)
            if peer is not None and not peer.closed:
                peer.send(m.TopicEvent(name, event[0], event[1]))

    async def _log_event(self, peer: Peer, topic: Any, msg: Any) -> None:
        if not isinstance(topic, str):
            topic = [str(t) for t in topic]
        # a copy in wire form (lists as tuples) on every transport; in-process peers
        # must not share mutable objects with the log
        self.log_event(topic, msgpack.unpackb(msgpack.packb(msg), use_list=False, strict_map_key=False))

    async def _get_events(self, peer: Peer, topic: str | None = None) -> Any:
        return self.event_log.get(topic)

    async def _subscribe_topic(self, peer: Peer, topics: Any) -> None:
        if peer.role != "client":
            raise ValueError("only clients may subscribe to topics")
        self.event_log.subscribe(peer.ident, topics)

    async def _unsubscribe_topic(self, peer: Peer, topics: Any) -> None:
        if peer.role == "client":
            self.event_log.unsubscribe(peer.ident, topics)


def _params(func: Any) -> Any:
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
