"""`Cluster`: the base class of cluster managers (distributed's `distributed.deploy.Cluster`).

A cluster manager starts a scheduler somewhere and workers for it, and gives users one
object to scale, inspect and close. `SpecCluster` (and so `LocalCluster`) builds on it
with its scheduler in this process; subclasses whose scheduler runs elsewhere (another
process, another host, a batch job: `SubprocessCluster`, `SSHCluster`, third-party
managers) implement:

- `async _start()`: start the scheduler, set `self.scheduler_address` (and
  `self.security` when it has a secret), then `await super()._start()`, which connects
  a private client used for `scheduler_info`, `wait_for_workers` and the logs;
- `scale(n)` (and `scale_down`), and `async _close()` ending with `await super()._close()`;
- for `adapt()`: `plan` / `requested` (names of the workers wanted / started),
  `async prune_closed()` (refresh what the scheduler sees, forget workers that went
  away), `scale_down(names)` (stop those workers; `Adaptive` has retired them already).
  `observed` and `names_to_addresses` come from the scheduler's identity, and
  `Adaptive` asks the scheduler for its decisions through `scheduler_comm`.

The base gives both ways of use (blocking, and `asynchronous=True` / `await` / `async
with`), `status` (a `shoal.core.Status`), `scheduler_info`, `dashboard_link`,
`wait_for_workers`, `get_logs`, `get_client` and the reprs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from shoal import _loop
from shoal.security import Security
from shoal.status import Status, StatusAttribute
from shoal.utils import Log, Logs, parse_timeout

__all__ = ["Cluster", "SchedulerRPC"]

logger = logging.getLogger("shoal.deploy")


class SchedulerRPC:
    """The scheduler's request ops as coroutine functions over the cluster's own client
    (distributed's `cluster.scheduler_comm`): ``await cluster.scheduler_comm.adaptive_target(target_duration=5)``.
    Arguments are by keyword, as the ops' typed records name them."""

    def __init__(self, cluster: Cluster):
        self._cluster = cluster

    def __getattr__(self, op: str) -> Any:
        if op.startswith("_"):
            raise AttributeError(op)

        async def call(**kwargs: Any) -> Any:
            client = self._cluster._client
            if client is None or client.scheduler_comm is None:
                raise RuntimeError(f"{type(self._cluster).__name__} {self._cluster.name!r} is not connected")
            return await client.scheduler_comm.request(op, **kwargs)

        call.__name__ = op
        return call

    def __repr__(self) -> str:
        return f"<SchedulerRPC {self._cluster.scheduler_address}>"


class Cluster:
    """Base class for cluster managers; see the module docstring."""

    status = StatusAttribute()
    _cluster_type = "Cluster"

    def __init__(
        self,
        asynchronous: bool = False,
        loop: Any = None,
        quiet: bool = False,
        name: str | None = None,
        scheduler_sync_interval: Any = 1,
    ):
        self._asynchronous = asynchronous
        self.loop = loop if loop is not None else (None if asynchronous else _loop.shared_loop())
        self.quiet = quiet
        self._name = name if name is not None else str(uuid.uuid4())[:8]
        self.scheduler_sync_interval = scheduler_sync_interval
        self.scheduler_address: str = "<Not Connected>"
        self.security: Security = getattr(self, "security", None) or Security()
        self._client: Any = None
        self._identity: dict = {}
        self._cluster_manager_logs: list[tuple[float, str]] = []
        self._adaptive: Any = None
        self._adaptive_options: dict = {}
        self.scheduler_comm = SchedulerRPC(self)
        self.status = Status.created

    # ------------------------------------------------------------------ lifecycle (subclasses extend)

    async def _start(self) -> None:
        """Connect to the scheduler at `self.scheduler_address` (set by the subclass)."""
        from shoal.client.client import Client

        self._client = await Client(
            self.scheduler_address, security=self.security, asynchronous=True, set_as_default=False
        )
        self._identity = await self._client.scheduler_comm.request("identity", n_workers=-1)
        self.status = Status.running

    async def _stop_adaptive(self) -> None:
        """Stop `adapt()`'s loop and wait for its round to end (idempotent); subclasses
        call it first in `_close`, before stopping workers."""
        adaptive, self._adaptive = self._adaptive, None
        if adaptive is not None:
            adaptive.stop(reason="cluster-close")
            await adaptive.wait_stopped()

    async def _close(self) -> None:
        await self._stop_adaptive()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.status = Status.closed

    def __await__(self):
        async def start() -> Cluster:
            if self.status in (Status.created, Status.undefined):
                self.status = Status.starting
                if self.loop is None:
                    self.loop = asyncio.get_running_loop()
                try:
                    await self._start()
                except BaseException:
                    await self._close()
                    raise
            return self

        return start().__await__()

    def _begin(self) -> None:
        """Blocking construction: subclasses call this at the end of `__init__`."""
        if not self._asynchronous:

            async def start() -> None:
                await self

            _loop.sync(self.loop, start)

    def sync(self, func: Any, *args: Any, asynchronous: bool | None = None, **kwargs: Any) -> Any:
        if asynchronous or (asynchronous is None and self.asynchronous):
            return func(*args, **kwargs)
        return _loop.sync(self.loop, func, *args, **kwargs)

    @property
    def asynchronous(self) -> bool:
        return self._asynchronous or (self.loop is not None and _loop.in_loop_thread(self.loop))

    def close(self, timeout: Any = None) -> Any:
        if self.status == Status.closed:
            return None if not self._asynchronous else _done()
        self.status = Status.closing
        return self.sync(self._close)

    def __enter__(self) -> Any:
        if self._asynchronous:
            raise TypeError(f"Used 'with' with an asynchronous {type(self).__name__}; use 'async with'")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        await self
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.status != Status.closed:
            await self._close()

    # ------------------------------------------------------------------ what subclasses provide

    def scale(self, n: int = 0, memory: Any = None, cores: Any = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement scale()")

    def adapt(self, Adaptive: Any = None, **kwargs: Any) -> Any:
        """Scale with the load between `minimum` and `maximum` workers (`shoal.deploy.Adaptive`,
        or the `Adaptive` class given). Replaces any earlier Adaptive; options not given
        keep their earlier values. Needs `scale`, `plan`, `requested` and `scale_down`
        from the subclass (see the module docstring)."""
        from shoal.deploy.adaptive import Adaptive as DefaultAdaptive

        if self._adaptive is not None:
            self._adaptive.stop(reason="adapt-called-again")
        self._adaptive_options.update(kwargs)
        self._adaptive = (Adaptive or DefaultAdaptive)(self, **self._adaptive_options)
        return self._adaptive

    # ------------------------------------------------------------------ what Adaptive reads (see the module docstring)

    @property
    def plan(self) -> set:
        raise NotImplementedError(f"{type(self).__name__} does not implement plan (needed by adapt())")

    @property
    def requested(self) -> set:
        raise NotImplementedError(f"{type(self).__name__} does not implement requested (needed by adapt())")

    @property
    def observed(self) -> set:
        """Names of the workers the scheduler saw at the last refresh (`prune_closed`)."""
        return {w.get("name", a) for a, w in self._identity.get("workers", {}).items()}

    def names_to_addresses(self, names: Any) -> dict:
        """{name: address} of these names (or addresses) among the workers the scheduler saw."""
        wanted = set(names)
        return {
            w.get("name", a): a for a, w in self._identity.get("workers", {}).items() if a in wanted or w.get("name") in wanted
        }

    async def prune_closed(self) -> None:
        """Refresh what the scheduler sees; subclasses also forget workers that went away."""
        if self._client is not None:
            self._identity = await self._client.scheduler_comm.request("identity", n_workers=-1)

    def scale_down(self, workers: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement scale_down (needed by adapt())")

    # ------------------------------------------------------------------ introspection

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def scheduler_info(self) -> dict:
        """The scheduler's identity (address, workers, ...); {} before it is reachable."""
        if self._client is None or self._client.status != "running" or self.asynchronous:
            return dict(self._identity)

        async def fetch() -> dict:
            return await self._client.scheduler_comm.request("identity", n_workers=-1)

        self._identity = self.sync(fetch)
        return dict(self._identity)

    @property
    def dashboard_link(self) -> str:
        return getattr(self._client, "dashboard_link", "") or ""

    async def _wait_for_workers(self, n_workers: int, timeout: float | None) -> None:
        await self._client.wait_for_workers(n_workers, timeout=timeout)
        self._identity = await self._client.scheduler_comm.request("identity", n_workers=-1)

    def wait_for_workers(self, n_workers: int, timeout: Any = None) -> Any:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r} has not started")
        return self.sync(self._wait_for_workers, n_workers, parse_timeout(timeout))

    def _log(self, message: str) -> None:
        self._cluster_manager_logs.append((time.time(), message))
        if not self.quiet:
            logger.info(message)

    async def _get_logs(self, cluster: bool, scheduler: bool, workers: Any) -> Logs:
        logs = Logs()
        if cluster:
            logs["Cluster"] = Log("\n".join(line for _, line in self._cluster_manager_logs))
        if scheduler and self._client is not None:
            logs["Scheduler"] = Log("\n".join(line for _, line in await self._client.get_scheduler_logs()))
        if workers and self._client is not None:
            chosen = None if workers is True else list(workers)
            for address, lines in (await self._client.get_worker_logs(workers=chosen)).items():
                logs[address] = Log("\n".join(line for _, line in lines))
        return logs

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        return self.sync(self._get_logs, cluster, scheduler, workers)

    def logs(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_logs(*args, **kwargs)

    def get_client(self) -> Any:
        from shoal.client.client import Client

        return Client(self)

    def __repr__(self) -> str:
        workers = len(self.scheduler_info.get("workers", {})) if self.status == Status.running else 0
        return f"{type(self).__name__}({self.name!r}, {self.scheduler_address!r}, workers={workers})"

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import cluster_html

        return cluster_html(self)


async def _done() -> None:
    return None
