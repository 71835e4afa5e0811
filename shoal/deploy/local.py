"""`LocalCluster`: a scheduler and workers on this machine.

The scheduler runs in this process, on the loop of whoever owns the cluster (the shared
loop thread for a blocking cluster). Workers are separate processes (`processes=True`,
the default), each supervised by a `Nanny` that restarts it when it dies or exceeds its
memory limit (`worker_class=WorkerProcess`: bare `python -m shoal.worker` processes that
nothing restarts), or `Worker` objects on the same loop (`processes=False`, over the
in-process transport). Everything listens on 127.0.0.1 and
every connection proves a random secret generated here. It is a `SpecCluster` whose
worker template is built from the arguments (workers are named 0, 1, 2, ...).
"""

from __future__ import annotations

import asyncio
import copy
import json
import inspect
import math
import os
import subprocess
import sys
from typing import Any

import psutil

from shoal._context import register_provider
from shoal._loop import wait_exit
from shoal.deploy.spec import SpecCluster, _accepts
from shoal.scheduler.server import Scheduler
from shoal.worker.nanny import Nanny, worker_process_env
from shoal.worker.server import Worker


def nprocesses_nthreads(n: int | None = None) -> tuple[int, int]:
    n = n or os.cpu_count() or 1
    if n <= 4:
        return n, 1
    procs = next(i for i in range(math.isqrt(n), n + 1) if n % i == 0 and i >= math.sqrt(n))
    return procs, n // procs


class WorkerProcess:
    """A worker in its own Python process, without a nanny (`worker_class=WorkerProcess`):
    nothing restarts it when it dies. `start()` launches it."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        name: Any = None,
        nthreads: int = 1,
        memory_limit: int = 0,
        secret: bytes | None = None,
        resources: dict | None = None,
        host: str = "127.0.0.1",
        **worker_kwargs: Any,
    ):
        """Other keyword arguments are the worker's (checked against `Worker`'s, handed to
        the process in a file only this user reads)."""
        from shoal.worker.options import checked_worker_kwargs

        self.name = name
        self.status = "created"
        self.worker_kwargs = checked_worker_kwargs(worker_kwargs, "WorkerProcess")
        self._cmd = [
            sys.executable, "-m", "shoal.worker", scheduler_address,
            "--nthreads", str(nthreads), "--name", json.dumps(name),
            "--memory-limit", str(memory_limit), "--host", host,
        ]  # fmt: skip
        if resources:
            self._cmd += ["--resources", json.dumps(resources)]
        self._secret = secret
        self.proc: subprocess.Popen | None = None

    async def start(self) -> WorkerProcess:
        if self.proc is None:
            cmd = list(self._cmd)
            if self.worker_kwargs:
                from shoal.worker.options import write_worker_options

                cmd += ["--options", write_worker_options(None, self.worker_kwargs)]
            self.proc = subprocess.Popen(cmd, env=worker_process_env(self._secret), stdin=subprocess.DEVNULL)
            self.status = "running"
        return self

    def __await__(self):
        return self.start().__await__()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def close(self, timeout: float = 5.0) -> None:
        self.status = "closed"
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        if await wait_exit(self.proc, timeout) is None:
            self.proc.kill()
            await wait_exit(self.proc)


class LocalCluster(SpecCluster):
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
        # a Nanny or WorkerProcess (or a subclass) starts worker processes, which reach the
        # scheduler over TCP whatever `processes` says
        spawns = isinstance(worker_class, type) and issubclass(worker_class, (Nanny, WorkerProcess))
        if processes is None:
            processes = worker_class is None or spawns
        if processes and worker_class is not None and not spawns:
            raise TypeError(f"worker_class must be Nanny or WorkerProcess with processes=True, got {worker_class!r}")
        worker_class = (worker_class or Nanny) if processes else (worker_class or Worker)
        if protocol is not None and "://" not in protocol:
            protocol += "://"  # "tcp" means "tcp://", as in distributed
        cpu = os.cpu_count() or 1
        if n_workers is None and threads_per_worker is None:
            n_workers, threads_per_worker = nprocesses_nthreads(cpu) if processes else (1, cpu)
        elif n_workers is None:
            assert threads_per_worker is not None
            n_workers = max(1, cpu // threads_per_worker) if processes else 1
        elif threads_per_worker is None:
            threads_per_worker = max(1, math.ceil(cpu / n_workers)) if n_workers else 1
        self._threads_per_worker = int(threads_per_worker)
        self.processes = bool(processes)
        host = host or ip or "127.0.0.1"
        if protocol is None:
            if "://" in host:
                protocol, host = host.split("://", 1)
                protocol += "://"
            elif not processes and not spawns and scheduler_port == 0:
                protocol = "inproc://"
            else:
                protocol = "tcp://"
        address = f"{protocol}{host}:{scheduler_port}" if protocol != "inproc://" else "inproc://"
        scheduler_options = dict(scheduler_kwargs or {})
        scheduler_options.setdefault("address", address)
        scheduler_options.setdefault("insecure", insecure)
        scheduler_options.setdefault("dashboard_address", dashboard_address)
        if blocked_handlers:
            scheduler_options.setdefault("blocked_handlers", list(blocked_handlers))
        self.dashboard_address = dashboard_address
        self._memory_limit = parse_memory_limit(worker_kwargs.pop("memory_limit", "auto"), int(n_workers))
        options: dict[str, Any] = {"nthreads": self._threads_per_worker, "memory_limit": self._memory_limit}
        resources = worker_kwargs.pop("resources", None)
        if resources:
            options["resources"] = resources
        worker_host = host if "://" not in host else "127.0.0.1"
        if worker_class is not Worker or processes:
            options["host"] = worker_host
        for key, value in check_worker_kwargs(worker_class, worker_kwargs).items():
            options[key] = value
        template = {"cls": worker_class, "options": options}
        super().__init__(
            workers={i: copy.deepcopy(template) for i in range(int(n_workers))},
            scheduler={"cls": Scheduler, "options": scheduler_options},
            worker=template,
            asynchronous=asynchronous,
            loop=loop,
            security=security,
            name=name,
            scheduler_sync_interval=scheduler_sync_interval,
            silence_logs=silence_logs,
        )

    def start_worker(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("LocalCluster.start_worker is not supported: use cluster.scale(n)")


#: what distributed's `Worker` and `Nanny` accept (and their `Server` base), so `LocalCluster(**worker_kwargs)` can
#: tell a typo (TypeError) from an option shoal does not have (a warning)
DISTRIBUTED_WORKER_OPTIONS = frozenset(
    """scheduler_ip scheduler_port scheduler_file worker_port nthreads local_directory services name
    memory_limit reconnect validate quiet resources silence_logs death_timeout preload preload_argv
    preload_nanny preload_nanny_argv security contact_address listen_address worker_class env interface
    host port protocol config worker_kwargs executor heartbeat_interval extensions metrics
    startup_information dashboard_address dashboard http_prefix nanny plugins low_level_profiler
    profile_cycle_interval lifetime lifetime_stagger lifetime_restart transition_counter_max data
    scheduler_sni WorkerStateClass blocked_handlers connection_limit deserialize serializers deserializers
    connection_args timeout""".split()
)

#: what LocalCluster itself sets on every worker (or the cluster owns)
_CLUSTER_OWNED = frozenset({"scheduler_ip", "scheduler_port", "scheduler_file", "security", "name", "nthreads"})


def check_worker_kwargs(worker_class: Any, worker_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options of `worker_kwargs` to pass to each `worker_class`: those it accepts.
    distributed's worker options shoal lacks are left out with a warning; anything else
    is a `TypeError` (a typo), as in distributed."""
    import difflib
    import warnings

    passed: dict[str, Any] = {}
    ignored = []
    for key, value in worker_kwargs.items():
        if key not in _CLUSTER_OWNED and _takes(worker_class, key):
            passed[key] = value
        elif key in DISTRIBUTED_WORKER_OPTIONS:
            ignored.append(key)
        else:
            known = sorted(DISTRIBUTED_WORKER_OPTIONS | set(_LOCAL_CLUSTER_PARAMS))
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"LocalCluster.__init__() got an unexpected keyword argument {key!r}{hint}")
    if ignored:
        warnings.warn(
            f"LocalCluster: shoal's workers do not support {', '.join(sorted(ignored))}; ignored",
            UserWarning,
            stacklevel=3,
        )
    return passed


def _takes(worker_class: Any, key: str) -> bool:
    """Whether `worker_class` takes `key`: a nanny, when it names it or its worker does
    (it passes its ``**kwargs`` on to the worker, so a bare ``**kwargs`` does not count
    and a typo is still the cluster's `TypeError` with its hint); anything else, as its
    signature says."""
    from shoal.worker.nanny import Nanny
    from shoal.worker.server import Worker

    def named(cls: Any) -> bool:
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            return False
        p = params.get(key)
        return p is not None and p.kind is not inspect.Parameter.VAR_KEYWORD

    if isinstance(worker_class, type) and issubclass(worker_class, (Nanny, WorkerProcess)):
        return named(worker_class) or named(Worker)
    return _accepts(worker_class, key)  # other classes and factories: as their signature says


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



_LOCAL_CLUSTER_PARAMS = tuple(inspect.signature(LocalCluster.__init__).parameters)

register_provider("local_cluster", LocalCluster)
