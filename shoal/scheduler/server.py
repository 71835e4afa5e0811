"""The scheduler's I/O shell: connections in, events to the state machine, messages out.

It decides nothing. A packet from a client or worker becomes one batch of events for
`SchedulerState.handle_stimulus`; the returned instructions are sent to the peers they
name (each connection coalesces what is sent in one loop tick into one packet). Task
specs, results and exceptions pass through as opaque `Pickled` values; the only user
code the scheduler ever unpickles is what an authenticated client sends to run there: a
function for `run_on_scheduler`, or a scheduler plugin (`plugins.py`).

This module holds `Scheduler`'s construction, the extension door, the life cycle and
`stimulate` (the one way into the state machine). The rest is in mixins, one concern
each: `connections.py` (packets checked at the edge and turned into events, a
connection's end), `queries.py` (read-only requests, `run_on_scheduler`), `restarts.py`
(nannies, restart), `worker_ops.py` (adaptive figures, liveness, broadcast, the task
stream) and `topic_server.py` (topic events). Extensions hosted through the door are in
`admin.py`, `datasets.py`, `plugins.py`, `profiling.py`, `memory_sampler.py`,
`watches.py` and `shoal.sync.server`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
import uuid
from typing import Any


from shoal import log_buffer, secret_files, server_options
from shoal import config as _config
from shoal.comm import listen
from shoal.comm.addressing import is_loopback_address, parse_address
from shoal.protocol import messages as m
from shoal.rpc import Peer
from shoal.rpc.server import Server
from shoal.scheduler.admin import AdminServer
from shoal.scheduler.connections import Connections
from shoal.scheduler.datasets import DatasetServer
from shoal.scheduler.events import ClientMsg
from shoal.scheduler.extension import call_hook, overridden_hooks
from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.scheduler.liveness import parse_ttl
from shoal.scheduler.options import SchedulerOptions
from shoal.scheduler.plugins import PluginHost
from shoal.scheduler.memory_sampler import MemorySamplers
from shoal.scheduler.profiling import ProfileServer
from shoal.scheduler.queries import Queries
from shoal.scheduler.restarts import Restarts
from shoal.scheduler.topic_server import TopicServer
from shoal.scheduler.topics import EventLog
from shoal.scheduler.watches import WatchServer
from shoal.scheduler.worker_ops import WorkerOps
from shoal.scheduler.state import FIRE_AND_FORGET, SchedulerState
from shoal.sync.server import SyncServer
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


class Scheduler(Connections, Queries, Restarts, WorkerOps, TopicServer, Server):
    """A scheduler server. `await Scheduler(...)` or `async with` starts it (the life
    cycle, background tasks and extension hosting are `shoal.rpc.server.Server`'s). The
    connections, queries, restarts, worker-group operations and topic events live in
    mixins of their own modules (`connections.py`, `queries.py`, `restarts.py`,
    `worker_ops.py`, `topic_server.py`)."""

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
        scheduler_file: str | None = None,
        preload: Any = None,
        preload_argv: Any = None,
        allowed_failures: int | None = None,
        worker_ttl: Any = None,
        idle_timeout: Any = None,
        security: Any = None,
        interface: str | None = None,
        dashboard: bool | None = None,
        services: Any = None,
        service_kwargs: Any = None,
        extensions: Any = None,
        http_prefix: str | None = None,
        contact_address: str | None = None,
        transition_counter_max: Any = None,
        jupyter: bool | None = None,
    ):
        """`address` (``"tcp://127.0.0.1:0"`` by default), or distributed's `host` (or
        `interface`), `port` and `protocol` to build it; `config`: dask configuration
        (``{"shoal.scheduler.allowed-failures": 5}``, ...) in force while the scheduler is
        built; handlers named in `blocked_handlers` (and ``shoal.scheduler.blocked-handlers``)
        refuse every request. `scheduler_file`, `preload`, `allowed_failures`, `worker_ttl`
        and `idle_timeout` are `shoal.scheduler.options`'; `dashboard=False` means no
        dashboard; options of distributed's shoal does not honour are refused by name
        (`shoal.server_options`)."""
        if "options" not in self.__dict__:  # the first pass (the second runs under `config`)
            server_options.refuse(
                "Scheduler", services=services, service_kwargs=service_kwargs, extensions=extensions,
                http_prefix=http_prefix, contact_address=contact_address,
                transition_counter_max=transition_counter_max, jupyter=jupyter,
            )  # fmt: skip
            self.options = SchedulerOptions(
                scheduler_file=scheduler_file, preload=preload, preload_argv=preload_argv,
                allowed_failures=allowed_failures, worker_ttl=worker_ttl, idle_timeout=idle_timeout,
            )  # fmt: skip
        if secret is None and security is not None:
            secret = getattr(security, "secret", None)
        if host is None and interface:
            host = server_options.host_of_interface(interface)
        if dashboard is False:
            dashboard_address = None
        overrides = {**(config or {}), **self.options.take_overrides()}
        if overrides:
            import dask.config

            with dask.config.set(overrides):
                self.__init__(  # type: ignore[misc]
                    address, secret=secret, insecure=insecure, validate=validate,
                    dashboard_address=dashboard_address, plugins=plugins, host=host, port=port,
                    protocol=protocol, blocked_handlers=blocked_handlers,
                )  # fmt: skip
            return
        config = _config
        self.options.read_config()
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

    def _block_handlers(self) -> None:
        for name in self._blocked:
            if name in self.handlers:
                self.handlers[name] = _blocked_handler(name)

    async def _start(self) -> Scheduler:
        """Listen and serve (`Server.start` wraps it: a failure closes and raises)."""
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
        await self.options.started(self)  # the scheduler file, preloads, the idle timeout
        return self

    @property
    def plugins(self) -> dict[str, Any]:
        """The scheduler plugins, by name."""
        return self.plugin_host.plugins

    def add_plugin(self, plugin: Any, *, idempotent: bool = False, name: str | None = None, **kwargs: Any) -> None:
        """Add a scheduler plugin from the scheduler's side (a preload's `dask_setup`, a
        test), as distributed's synchronous `add_plugin`: its `start` is not called (the
        client's `register_plugin` awaits it). A plugin of the same name is kept with
        `idempotent`, else replaced with a warning."""
        if kwargs:
            raise TypeError(f"add_plugin() got unexpected keyword arguments {sorted(kwargs)}")
        if name is None:
            name = getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4()}"
        if name in self.plugin_host.plugins:
            if idempotent:
                return
            import warnings

            warnings.warn(f"Scheduler already contains a plugin with name {name}; overwriting.", UserWarning,
                          stacklevel=2)  # fmt: skip
        self.plugin_host.register(plugin, name)

    def remove_plugin(self, name: str | None = None) -> None:
        """Remove scheduler plugin `name` (`ValueError` if there is none); its `close()`
        runs in the background."""
        if name is None or name not in self.plugin_host.plugins:
            raise ValueError(f"Could not find plugin {name!r} among the current scheduler plugins")
        self.spawn(self.plugin_host.remove(name))

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
        await self.options.closing(self)
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
        error rather than run on a state it cannot trust (docs/design.md: why the failing
        event is not undone)."""
        st = self.state
        kinds = [type(e).__name__ for e in events]
        try:
            st.validate_state()
            instructions = st.instructions_after_failure(events[-1].stimulus_id if events else "")
        except Exception as invalid:
            st.drop_output()
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
