"""`SpecCluster`: a cluster described by specifications, the base of `LocalCluster`.

A spec is `{"cls": Scheduler | Worker | Nanny | any class or dotted import string,
"options": {...}}`. `scheduler=` says how to make the scheduler (it runs in this process,
on the cluster's loop); `workers=` maps each worker name to its spec and is the
*desired* state (`worker_spec`); `worker=` is the template `scale()` uses for new workers.
`_correct_state()` makes the running workers (`workers`: name -> Worker/Nanny/...) match
`worker_spec`: workers leaving it are retired through the scheduler first (their only
copies of results move to the remaining workers), then closed; new ones are started and
awaited until the scheduler sees them. Every connection proves a secret generated here
unless `security=False`.

The cluster owns its `Adaptive` (if any) and stops it on close. Blocking clusters run on
the shared loop thread; `asynchronous=True` ones on the running loop (`await cluster`,
`async with`), where `scale()` returns an awaitable that runs whether awaited or not.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import importlib
import inspect
import logging
import math
import time
import uuid
import weakref
from typing import Any

from shoal import _loop, config, log_terminal
from shoal.deploy.cluster import Cluster
from shoal.exceptions import WorkerStartTimeoutError
from shoal.security import Security
from shoal.utils import Log, Logs, format_bytes, parse_timeout

logger = logging.getLogger("shoal.deploy")

_clusters: weakref.WeakSet = weakref.WeakSet()

#: scheduler options of `distributed` specs that describe where to listen
_ADDRESS_OPTIONS = ("host", "port", "protocol", "interface")


def import_cls(cls: Any) -> Any:
    """A class, or one named by a dotted import string (`"shoal.Nanny"`)."""
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        if not module:
            raise ValueError(f"cls must be a class or a dotted import path, got {cls!r}")
        return getattr(importlib.import_module(module), name)
    return cls


def _accepts(cls: Any, name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class ProcessInterface:
    """Base for what a spec may start in place of a `Worker`/`Nanny` (dask-jobqueue's job,
    a cloud VM, ...): override `start` (launch, e.g., `python -m shoal.worker <scheduler>
    --name <name>`, and return once launched) and `close`. The cluster calls
    `cls(scheduler_address, name=..., secret=..., **options)` when those are accepted and
    waits for a worker of that name to register with the scheduler."""

    def __init__(self, scheduler: Any = None, name: Any = None):
        self.address: str | None = None
        self.external_address: str | None = None
        self.scheduler_address = scheduler
        self.name = name
        self.status = "created"
        self._closed = asyncio.Event()

    async def start(self) -> ProcessInterface:
        self.status = "running"
        return self

    async def close(self) -> None:
        self.status = "closed"
        self._closed.set()

    async def finished(self) -> None:
        await self._closed.wait()

    def __await__(self):
        return self.start().__await__()

    async def __aenter__(self) -> ProcessInterface:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: name={self.name!r} status={self.status}>"


class SpecCluster(Cluster):
    """A cluster made of a scheduler and workers described by specs. See the module docstring."""

    _cluster_type = "SpecCluster"

    def __init__(
        self,
        workers: dict | None = None,
        scheduler: dict | None = None,
        worker: dict | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        security: Any = None,
        silence_logs: Any = False,
        name: str | None = None,
        shutdown_on_close: bool = True,
        scheduler_sync_interval: Any = 1,
        shutdown_scheduler: bool = True,
    ):
        from shoal.scheduler.server import Scheduler

        config.warn_untwinned()
        self.scheduler_spec: dict = copy.copy(scheduler) if scheduler else {"cls": Scheduler, "options": {}}
        self.worker_spec: dict = copy.copy(workers) if workers else {}
        self.new_spec: dict | None = copy.copy(worker) if worker else None
        self.scheduler: Any = None
        self.workers: dict[Any, Any] = {}
        self.security: Security = _security(security)
        self.shutdown_on_close = shutdown_on_close
        self.shutdown_scheduler = shutdown_scheduler
        self._name = name if name is not None else str(uuid.uuid4())[:8]
        self.status = "created"
        self._asynchronous = asynchronous
        self._i = 0
        self._lock: asyncio.Lock | None = None
        self._adaptive: Any = None
        self._adaptive_options: dict = {}
        self._cluster_manager_logs: collections.deque = collections.deque(maxlen=1000)
        self._started: Any = None
        # silence_logs: the level of shoal's lines shown on the terminal while this runs
        self._old_log_levels = log_terminal.silence(silence_logs) if silence_logs else None
        _clusters.add(self)
        if asynchronous:
            self.loop = _loop.unwrap(loop) or _running_loop_or_none()
        else:
            self.loop = _loop.unwrap(loop) or _loop.shared_loop()
            try:
                _loop.sync(self.loop, self._start)
            except BaseException:
                _loop.sync(self.loop, self._close)
                raise

    # ------------------------------------------------------------------ lifecycle

    def __await__(self):
        async def start() -> SpecCluster:
            if self._started is None:
                self.loop = asyncio.get_running_loop()
                self._started = asyncio.ensure_future(self._start())
            try:
                await self._started
            except BaseException:
                await self._close()  # what did start (the scheduler, some workers) stops
                raise
            await self._correct_state()
            return self

        return start().__await__()

    async def _start(self) -> None:
        if self.status == "running":
            return
        self.status = "starting"
        self._lock = asyncio.Lock()
        self.scheduler = self._make_scheduler()
        try:
            await self.scheduler.start()
        except Exception as e:  # as distributed: one exception type for a failed start
            raise RuntimeError(f"Cluster failed to start: {e}") from e
        self._log(f"Scheduler at {self.scheduler.address}", echo=False)  # the scheduler says it itself
        await self._correct_state()
        self.status = "running"

    def _make_scheduler(self) -> Any:
        cls = import_cls(self.scheduler_spec.get("cls"))
        options = dict(self.scheduler_spec.get("options") or {})
        from shoal.scheduler.server import Scheduler

        if isinstance(cls, type) and issubclass(cls, Scheduler):
            options.pop("security", None)
            options.pop("dashboard", None)
            if "address" not in options and any(k in options for k in _ADDRESS_OPTIONS):
                protocol = options.pop("protocol", None) or "tcp://"
                protocol = protocol if protocol.endswith("://") else protocol + "://"
                host = options.pop("host", None) or "127.0.0.1"
                port = options.pop("port", 0) or 0
                options["address"] = "inproc://" if protocol == "inproc://" else f"{protocol}{host}:{port}"
            for k in _ADDRESS_OPTIONS:
                options.pop(k, None)
        if "secret" not in options and _accepts(cls, "secret"):
            options["secret"] = self.security.secret
        return cls(**options)

    def _make_worker(self, name: Any, spec: dict) -> Any:
        from shoal.deploy.local import parse_memory_limit

        cls = import_cls(spec["cls"])
        options = dict(spec.get("options") or {})
        security = options.pop("security", None)
        if "secret" not in options and _accepts(cls, "secret"):
            options["secret"] = _security(security).secret if security is not None else self.security.secret
        if "name" not in options and _accepts(cls, "name"):
            options["name"] = name
        if isinstance(options.get("memory_limit"), (str, float)):
            options["memory_limit"] = parse_memory_limit(options["memory_limit"], max(1, len(self.worker_spec)))
        return cls(self.scheduler.address, **options)

    async def _correct_state(self) -> None:
        """Make the running workers match `worker_spec` (see the module docstring)."""
        if self.scheduler is None or self._lock is None:
            return
        async with self._lock:
            to_close = [n for n in self.workers if n not in self.worker_spec]
            if to_close:
                observed = self.names_to_addresses(to_close)
                if observed:
                    try:
                        await self.scheduler.retire_workers(workers=list(observed.values()), close_workers=True)
                    except Exception as e:  # noqa: BLE001 - the workers are closed regardless
                        logger.warning("could not retire workers %s gracefully: %s", to_close, e)
                closing = [self.workers.pop(n) for n in to_close]
                await asyncio.gather(*(_close(w) for w in closing), return_exceptions=True)
                self._log(f"Closed workers {to_close}")
            to_open = [n for n in self.worker_spec if n not in self.workers]
            if to_open:
                started = []
                for n in to_open:
                    w = self._make_worker(n, self.worker_spec[n])
                    self.workers[n] = w
                    started.append(w)
                results = await asyncio.gather(*(_start(w) for w in started), return_exceptions=True)
                for n, r in zip(to_open, results):
                    if isinstance(r, BaseException):
                        raise RuntimeError(f"Cluster failed to start: worker {n!r}: {r}") from r
                await self._wait_for_names(to_open)
                self._log(f"Started workers {to_open}")

    async def _wait_for_names(self, names: list) -> None:
        timeout = config.get_timedelta("deploy.worker-start-timeout")
        deadline = time.monotonic() + timeout
        wanted = set(names)
        while True:
            missing = wanted - self.observed
            if not missing:
                return
            for n in missing:
                w = self.workers.get(n)
                proc = getattr(w, "proc", None)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"Cluster failed to start: worker {n!r} exited with code {proc.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerStartTimeoutError(len(wanted) - len(missing), len(wanted), timeout)
            await self.scheduler.workers_changed(min(remaining, 0.25))

    def names_to_addresses(self, names: Any) -> dict:
        """{name: address} of these names (or addresses) among the workers the scheduler sees."""
        wanted = set(names)
        out = {}
        for ws in self.scheduler.state.workers.values():
            if ws.name in wanted or ws.address in wanted:
                out[ws.name] = ws.address
        return out

    def _sync(self, coro_fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.asynchronous:
            return coro_fn(*args, **kwargs)
        return _loop.sync(self.loop, coro_fn, *args, **kwargs)

    def sync(self, func: Any, *args: Any, asynchronous: bool | None = None, **kwargs: Any) -> Any:
        if asynchronous or (asynchronous is None and self.asynchronous):
            return func(*args, **kwargs)
        return _loop.sync(self.loop, func, *args, **kwargs)

    async def _close(self) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        if self._adaptive is not None:
            self._adaptive.stop(reason="cluster-close")
            await self._adaptive.wait_stopped()
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(_close(w) for w in workers), return_exceptions=True)
        if self.scheduler is not None and self.shutdown_scheduler:
            await self.scheduler.close()
        self.status = "closed"
        if self._old_log_levels is not None:
            log_terminal.restore(self._old_log_levels)
            self._old_log_levels = None

    def close(self, timeout: Any = None) -> Any:
        if self._asynchronous:
            return self._close()
        if self.status == "closed" or self.loop is None or self.loop.is_closed():
            return None
        _loop.sync(self.loop, self._close)
        return None

    # with / async with: `Cluster`'s

    def __del__(self) -> None:
        if getattr(self, "status", "closed") == "running" and not self._asynchronous:
            try:
                self.close()
            except Exception:
                pass

    # ------------------------------------------------------------------ scaling

    def _new_worker_name(self, i: int) -> Any:
        return i

    def new_worker_spec(self) -> dict:
        """`{name: spec}` of one new worker from the `worker=` template."""
        if self.new_spec is None:
            raise ValueError(f"{type(self).__name__} has no worker template (`worker=`): it cannot add workers")
        while self._new_worker_name(self._i) in self.worker_spec:
            self._i += 1
        return {self._new_worker_name(self._i): copy.deepcopy(self.new_spec)}

    def _template_option(self, key: str) -> Any:
        options = (self.new_spec or {}).get("options") or {}
        if key == "nthreads":
            return options.get("nthreads") or options.get("ncores")
        value = options.get(key)
        if isinstance(value, (str, float)):
            from shoal.deploy.local import parse_memory_limit

            return parse_memory_limit(value, max(1, len(self.worker_spec)))
        return value

    def _workers_for(self, memory: Any = None, cores: Any = None) -> int:
        n = 0
        if memory is not None:
            from dask.utils import parse_bytes

            limit = self._template_option("memory_limit")
            if not limit:
                raise ValueError("to scale by memory the worker spec needs a memory_limit option")
            n = max(n, math.ceil((parse_bytes(memory) if isinstance(memory, str) else memory) / limit))
        if cores is not None:
            nthreads = self._template_option("nthreads")
            if not nthreads:
                raise ValueError("to scale by cores the worker spec needs an nthreads option")
            n = max(n, math.ceil(cores / nthreads))
        return n

    def prune_closed(self) -> None:
        """Forget workers that went away by themselves (retired through the scheduler, a
        nanny that gave up, a worker process that exited) so scaling replaces them."""
        observed = self.observed
        for name, w in list(self.workers.items()):
            proc = getattr(w, "proc", None)
            dead = getattr(w, "status", None) == "closed" or (proc is not None and proc.poll() is not None)
            if dead and name not in observed:
                del self.workers[name]
                self.worker_spec.pop(name, None)

    def _plan_scale(self, n: int) -> None:
        self.prune_closed()
        while len(self.worker_spec) > n:
            not_launched = [name for name in self.worker_spec if name not in self.workers]
            if not_launched:
                del self.worker_spec[not_launched[-1]]
            else:
                self.worker_spec.popitem()
        while len(self.worker_spec) < n:
            self.worker_spec.update(self.new_worker_spec())

    def scale(self, n: int = 0, memory: Any = None, cores: Any = None) -> Any:
        """Ask for `n` workers (or enough for `memory` bytes / `cores` threads). Blocking
        clusters return once the workers are up (or gone); asynchronous ones return an
        awaitable that does the work whether it is awaited or not."""
        n = max(int(n), self._workers_for(memory, cores))
        self._plan_scale(n)
        self._log(f"Scaling to {n} workers")
        if self.asynchronous:
            return asyncio.ensure_future(self._correct_state())
        _loop.sync(self.loop, self._correct_state)
        return None

    def scale_up(self, n: int = 0, memory: Any = None, cores: Any = None) -> Any:
        return self.scale(n, memory=memory, cores=cores)

    async def _scale_down(self, workers: Any) -> None:
        workers = list(workers)
        by_address = {addr: name for name, addr in self.names_to_addresses(workers).items()}
        for w in workers:
            name = by_address.get(w, w)
            self.worker_spec.pop(name, None)
        await self._correct_state()

    def scale_down(self, workers: Any) -> Any:
        """Remove these workers (names or addresses) from the spec, retire and close them."""
        return self._sync(self._scale_down, workers)

    def adapt(
        self,
        Adaptive: Any = None,
        minimum: float = 0,
        maximum: float = math.inf,
        minimum_cores: int | None = None,
        maximum_cores: int | None = None,
        minimum_memory: Any = None,
        maximum_memory: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Scale between `minimum` and `maximum` workers with the load (`shoal.deploy.Adaptive`).
        Replaces any earlier Adaptive; options not given keep their earlier values."""
        from shoal.deploy.adaptive import Adaptive as DefaultAdaptive

        minimum = max(minimum, self._workers_for(minimum_memory, minimum_cores))
        if maximum_cores is not None:
            maximum = min(maximum, self._workers_for(cores=maximum_cores))
        if maximum_memory is not None:
            maximum = min(maximum, self._workers_for(memory=maximum_memory))
        if self._adaptive is not None:
            self._adaptive.stop(reason="adapt-called-again")
        self._adaptive_options.update(kwargs, minimum=minimum, maximum=maximum)
        self._adaptive = (Adaptive or DefaultAdaptive)(self, **self._adaptive_options)
        return self._adaptive

    # ------------------------------------------------------------------ workers and logs

    async def _wait_for_workers(self, n_workers: int, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.scheduler.state.workers) < n_workers:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                assert timeout is not None
                raise WorkerStartTimeoutError(len(self.scheduler.state.workers), n_workers, timeout)
            await self.scheduler.workers_changed(remaining)

    def wait_for_workers(self, n_workers: int, timeout: Any = None) -> Any:
        """Wait until the scheduler has `n_workers` workers; `WorkerStartTimeoutError`
        (naming how many arrived) after `timeout`."""
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"`n_workers` must be a positive integer. Instead got {n_workers}.")
        if self.scheduler is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r} has not started")
        return self._sync(self._wait_for_workers, n_workers, parse_timeout(timeout))

    def _log(self, message: str, echo: bool = True) -> None:
        """Keep `message` in the cluster manager's logs (`get_logs`); `echo` logs it too."""
        self._cluster_manager_logs.append((time.time(), message))
        if echo:
            logger.info(message)

    async def _get_logs(self, cluster: bool, scheduler: bool, workers: Any) -> Logs:
        from shoal import log_buffer

        logs = Logs()
        if cluster:
            logs["Cluster"] = Log("\n".join(f"{time.ctime(t)} {msg}" for t, msg in self._cluster_manager_logs))
        if scheduler and self.scheduler is not None:
            logs["Scheduler"] = Log("\n".join(line for _, line in reversed(log_buffer.recent())))
        if workers and self.scheduler is not None:
            selected = None if workers is True else list(workers)
            got = await self.scheduler.get_worker_logs(workers=selected)
            for address, lines in got.items():
                logs[address] = Log("\n".join(line for _, line in reversed(lines)))
        return logs

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """`Logs({"Cluster": ..., "Scheduler": ..., worker address: ...})`, oldest line
        first; `workers` may be a list of addresses."""
        return self._sync(self._get_logs, cluster, scheduler, workers)

    # ------------------------------------------------------------------ introspection (name, logs: `Cluster`'s)

    @property
    def plan(self) -> set:
        return set(self.worker_spec)

    @property
    def requested(self) -> set:
        return set(self.workers)

    @property
    def observed(self) -> set:
        """Names of the workers the scheduler sees."""
        if self.scheduler is None:
            return set()
        return {ws.name for ws in self.scheduler.state.workers.values()}

    @property
    def scheduler_address(self) -> str:
        if self.scheduler is None or getattr(self.scheduler, "listener", None) is None:
            return "<Not Connected>"
        return self.scheduler.address

    @property
    def asynchronous(self) -> bool:
        return _loop.in_async_call(self.loop, default=self._asynchronous)

    @property
    def called_from_running_loop(self) -> bool:
        return self.loop is not None and _loop.in_loop_thread(self.loop)

    @property
    def dashboard_link(self) -> str:
        """The scheduler's dashboard, when it serves one (`dashboard_link` or
        `dashboard_address` attribute of the scheduler); "" otherwise."""
        link = getattr(self.scheduler, "dashboard_link", None)
        if isinstance(link, str) and link:
            return link
        address = getattr(self.scheduler, "dashboard_address", None)
        if isinstance(address, str) and address.startswith("http"):
            return address
        return ""

    @property
    def scheduler_info(self) -> dict:
        if self.scheduler is None or getattr(self.scheduler, "status", None) != "running":
            return {}
        return self.scheduler.identity()

    def get_client(self) -> Any:
        from shoal.client.client import Client, default_client

        try:
            current = default_client()
        except ValueError:
            current = None
        if current is not None and current.cluster is self:
            return current
        return Client(self)

    @classmethod
    def from_name(cls, name: str) -> SpecCluster:
        raise NotImplementedError("reconnecting to a cluster by name is not supported")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return id(self)

    def _threads_and_memory(self) -> tuple[int, int | None]:
        threads, memory, unlimited = 0, 0, False
        for spec in self.worker_spec.values():
            options = spec.get("options") or {}
            threads += int(options.get("nthreads") or 1)
            limit = options.get("memory_limit")
            if isinstance(limit, (str, float)):
                from shoal.deploy.local import parse_memory_limit

                limit = parse_memory_limit(limit, max(1, len(self.worker_spec)))
            if not limit:
                unlimited = True
            else:
                memory += int(limit)
        return threads, (None if unlimited or not self.worker_spec else memory)

    def __repr__(self) -> str:
        threads, memory = self._threads_and_memory()
        text = (
            f"{type(self).__name__}({self.name!r}, {self.scheduler_address!r}, "
            f"workers={len(self.workers)}, threads={threads}"
        )
        if memory:
            text += f", memory={format_bytes(memory)}"
        return text + ")"

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import cluster_html

        return cluster_html(self)


async def _start(w: Any) -> None:
    start = getattr(w, "start", None)
    result = start() if start is not None else w
    if inspect.isawaitable(result):
        await result


async def _close(w: Any) -> None:
    result = w.close()
    if inspect.isawaitable(result):
        await result


def _security(security: Any) -> Security:
    if security is None or security is True:
        return Security.temporary()
    if security is False:
        return Security(None)
    if isinstance(security, dict):
        return Security(**security)
    return security


def _running_loop_or_none() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {
        'close_clusters': 'shoal.deploy.compat_helpers:close_clusters',
        'run_spec': 'shoal.deploy.compat_helpers:run_spec',
    },
    {
        'init_spec': "an internal of distributed's SpecCluster; give SpecCluster(workers=...) specs directly",
    },
)
