"""`LocalCluster`: a scheduler and workers on this machine.

The scheduler runs in this process, on the loop of whoever owns the cluster (the shared
loop thread for a blocking cluster). Workers are separate processes (`processes=True`,
the default), each supervised by a `Nanny` that restarts it when it dies or exceeds its
memory limit (`worker_class=WorkerProcess`: bare `python -m shoal.worker` processes that
nothing restarts), or `Worker` objects on the same loop (`processes=False`, over the
in-process transport). Everything listens on 127.0.0.1 and
every connection proves a random secret generated here.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
import weakref
from typing import Any

import psutil

from shoal import _loop, config
from shoal.scheduler.server import Scheduler
from shoal.security import Security
from shoal.utils import format_bytes
from shoal.worker.nanny import Nanny, worker_process_env
from shoal.worker.server import Worker

_clusters: weakref.WeakSet = weakref.WeakSet()


def nprocesses_nthreads(n: int | None = None) -> tuple[int, int]:
    n = n or os.cpu_count() or 1
    if n <= 4:
        return n, 1
    procs = next(i for i in range(math.isqrt(n), n + 1) if n % i == 0 and i >= math.sqrt(n))
    return procs, n // procs


class WorkerProcess:
    """A worker in its own Python process, without a nanny (`worker_class=WorkerProcess`):
    nothing restarts it when it dies."""

    def __init__(self, scheduler_address: str, name: Any, nthreads: int, memory_limit: int,
                 secret: bytes | None, resources: dict | None, host: str):  # fmt: skip
        self.name = name
        cmd = [
            sys.executable, "-m", "shoal.worker", scheduler_address,
            "--nthreads", str(nthreads), "--name", json.dumps(name),
            "--memory-limit", str(memory_limit), "--host", host,
        ]  # fmt: skip
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        self.proc = subprocess.Popen(cmd, env=worker_process_env(secret), stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def close(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await loop.run_in_executor(None, self.proc.wait)


class LocalCluster:
    """A cluster on this machine. See the module docstring."""

    def __init__(
        self,
        name: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        loop: Any = None,
        start: Any = None,
        host: str | None = None,
        ip: str | None = None,
        scheduler_port: int = 0,
        silence_logs: int = 30,
        dashboard_address: Any = ":8787",
        worker_dashboard_address: Any = None,
        services: Any = None,
        worker_services: Any = None,
        service_kwargs: Any = None,
        asynchronous: bool = False,
        security: Any = None,
        protocol: str | None = None,
        blocked_handlers: Any = None,
        interface: Any = None,
        worker_class: Any = None,
        scheduler_kwargs: Any = None,
        scheduler_sync_interval: Any = 1,
        insecure: bool = False,
        **worker_kwargs: Any,
    ):
        if processes is None:
            processes = worker_class is None or getattr(worker_class, "__name__", "") in ("Nanny", "WorkerProcess")
        if processes and worker_class is not None and worker_class not in (Nanny, WorkerProcess):
            raise TypeError(f"worker_class must be Nanny or WorkerProcess with processes=True, got {worker_class!r}")
        self._worker_class = (worker_class or Nanny) if processes else None
        cpu = os.cpu_count() or 1
        if n_workers is None and threads_per_worker is None:
            n_workers, threads_per_worker = nprocesses_nthreads(cpu) if processes else (1, cpu)
        elif n_workers is None:
            assert threads_per_worker is not None
            n_workers = max(1, cpu // threads_per_worker) if processes else 1
        elif threads_per_worker is None:
            threads_per_worker = max(1, math.ceil(cpu / n_workers)) if n_workers else 1
        self.name = name if name is not None else str(uuid.uuid4())[:8]
        self._n_workers = int(n_workers)
        self._threads_per_worker = int(threads_per_worker)
        self.processes = bool(processes)
        host = host or ip or "127.0.0.1"
        if protocol is None:
            if "://" in host:
                protocol, host = host.split("://", 1)
                protocol += "://"
            elif not processes and scheduler_port == 0:
                protocol = "inproc://"
            else:
                protocol = "tcp://"
        self._host = host
        self._protocol = protocol
        self._scheduler_port = scheduler_port
        if security is None or security is True:
            security = Security.temporary()
        elif security is False:
            security = Security(None)
        elif isinstance(security, dict):
            security = Security(**security)
        self.security: Security = security
        self._insecure = insecure
        memory_limit = worker_kwargs.pop("memory_limit", "auto")
        self._memory_limit = parse_memory_limit(memory_limit, self._n_workers)
        self._resources = worker_kwargs.pop("resources", None)
        self._worker_kwargs = worker_kwargs
        self._nanny_kwargs = {k: worker_kwargs[k] for k in ("local_directory", "env", "death_timeout") if k in worker_kwargs}
        self.dashboard_address = dashboard_address
        self.scheduler: Scheduler | None = None
        self.workers: dict[Any, Any] = {}
        self.status = "created"
        self._asynchronous = asynchronous
        self._next_name = 0
        self._lock: asyncio.Lock | None = None
        _clusters.add(self)
        if asynchronous:
            self.loop = loop or _loop_or_none()
            self._started: Any = None
        else:
            self.loop = loop or _loop.shared_loop()
            self._started = None
            try:
                _loop.sync(self.loop, self._start)
            except BaseException:
                _loop.sync(self.loop, self._close)
                raise

    # ------------------------------------------------------------------ lifecycle

    def __await__(self):
        async def start() -> LocalCluster:
            if self._started is None:
                self.loop = asyncio.get_running_loop()
                self._started = asyncio.ensure_future(self._start())
            await self._started
            return self

        return start().__await__()

    async def _start(self) -> None:
        if self.status == "running":
            return
        self.status = "starting"
        address = f"{self._protocol}{self._host}:{self._scheduler_port}" if self._protocol != "inproc://" else "inproc://"
        self.scheduler = Scheduler(
            address, secret=self.security.secret, insecure=self._insecure, dashboard_address=self.dashboard_address
        )
        await self.scheduler.start()
        await self._scale_to(self._n_workers)
        self.status = "running"

    async def _start_worker(self, name: Any) -> None:
        assert self.scheduler is not None
        host = self._host if "://" not in self._host else "127.0.0.1"
        if self.processes and self._worker_class is WorkerProcess:
            proc = WorkerProcess(
                self.scheduler.address, name, self._threads_per_worker, self._memory_limit,
                self.security.secret, self._resources, host,
            )  # fmt: skip
            self.workers[name] = proc
        elif self.processes:
            nanny = Nanny(
                self.scheduler.address, nthreads=self._threads_per_worker, name=name,
                memory_limit=self._memory_limit, resources=self._resources, secret=self.security.secret,
                host=host, **self._nanny_kwargs,
            )  # fmt: skip
            self.workers[name] = nanny
            try:
                await nanny.start()
            except Exception as e:
                raise RuntimeError(f"Cluster failed to start: worker {name!r}: {e}") from e
        else:
            w = Worker(
                self.scheduler.address, nthreads=self._threads_per_worker, name=name,
                memory_limit=self._memory_limit, resources=self._resources, secret=self.security.secret,
            )  # fmt: skip
            self.workers[name] = w
            await w.start()

    async def _scale_to(self, n: int) -> None:
        assert self.scheduler is not None
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while len(self.workers) > n:
                name, w = self.workers.popitem()
                await w.close()
            names = []
            while len(self.workers) + len(names) < n:
                names.append(self._next_name)
                self._next_name += 1
            await asyncio.gather(*(self._start_worker(nm) for nm in names))
            await self._wait_for_count(n)

    async def _wait_for_count(self, n: int) -> None:
        assert self.scheduler is not None
        timeout = config.get_timedelta("deploy.worker-start-timeout")
        deadline = time.monotonic() + timeout
        while len(self.scheduler.state.workers) < n:
            for name, w in self.workers.items():
                if isinstance(w, WorkerProcess) and w.proc.poll() is not None:
                    raise RuntimeError(f"Cluster failed to start: worker {name!r} exited with code {w.proc.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"Cluster failed to start: only {len(self.scheduler.state.workers)}/{n} workers arrived")
            self.scheduler._workers_changed.clear()
            try:
                await asyncio.wait_for(self.scheduler._workers_changed.wait(), min(remaining, 0.25))
            except asyncio.TimeoutError:
                pass

    def scale(self, n: int = 0, memory: Any = None, cores: Any = None) -> Any:
        if cores is not None:
            n = max(n, math.ceil(cores / self._threads_per_worker))
        if self._asynchronous:
            return self._scale_to(n)
        _loop.sync(self.loop, self._scale_to, n)
        return None

    async def _close(self) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        if self.scheduler is not None:
            await self.scheduler.close()
        self.status = "closed"

    def close(self, timeout: Any = None) -> Any:
        if self._asynchronous:
            return self._close()
        if self.status == "closed" or self.loop.is_closed():
            return None
        _loop.sync(self.loop, self._close)
        return None

    def __enter__(self) -> LocalCluster:
        if self._asynchronous:
            raise TypeError("Used 'with' with an asynchronous LocalCluster; use 'async with'")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> LocalCluster:
        await self
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._close()

    def __del__(self) -> None:
        if getattr(self, "status", "closed") == "running" and not self._asynchronous:
            try:
                self.close()
            except Exception:
                pass

    # ------------------------------------------------------------------ introspection

    @property
    def scheduler_address(self) -> str:
        if self.scheduler is None or self.scheduler.listener is None:
            return "<Not Connected>"
        return self.scheduler.address

    @property
    def asynchronous(self) -> bool:
        return self._asynchronous or _loop.in_loop_thread(self.loop)

    @property
    def dashboard_link(self) -> str:
        """The scheduler's dashboard (`/status`), or "" when it has none."""
        return self.scheduler.dashboard_link if self.scheduler is not None else ""

    def wait_for_workers(self, n_workers: int, timeout: Any = None) -> Any:
        from shoal.client.client import Client

        with Client(self, set_as_default=False) as c:
            return c.wait_for_workers(n_workers, timeout)

    def get_client(self) -> Any:
        from shoal.client.client import Client

        return Client(self)

    def __repr__(self) -> str:
        n = len(self.workers)
        threads = n * self._threads_per_worker
        text = f"LocalCluster({self.name!r}, {self.scheduler_address!r}, workers={n}, threads={threads}"
        if self._memory_limit:
            text += f", memory={format_bytes(self._memory_limit * n)}"
        return text + ")"

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import cluster_html

        return cluster_html(self)


def parse_memory_limit(value: Any, n_workers: int) -> int:
    """Bytes per worker from 'auto' (memory / n_workers), 0/None (no limit), '4GiB', a
    fraction of the memory (float <= 1) or a number of bytes."""
    total = psutil.virtual_memory().total
    if value in (None, 0, "0"):
        return 0
    if value == "auto":
        return int(total / max(1, n_workers))
    if isinstance(value, str):
        from dask.utils import parse_bytes

        return int(parse_bytes(value))
    if isinstance(value, float) and value <= 1:
        return int(total * value)
    return int(value)


def _loop_or_none() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
