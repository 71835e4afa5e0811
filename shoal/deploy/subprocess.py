"""`SubprocessCluster`: a scheduler and workers each in a process of its own, started
with shoal's command line (`shoal scheduler`, `shoal worker`), as distributed's
`distributed.deploy.subprocess.SubprocessCluster`.

Unlike `LocalCluster`, nothing runs in the user's process but the cluster object and a
client: the scheduler is as isolated as the workers. The cluster generates a secret and
hands it to each process in its environment (never on the command line).
`SSHCluster` (`shoal.deploy.ssh`) is the same with each command run over `ssh`.
Not a `SpecCluster` (whose scheduler lives in the user's process): `scale` starts or
stops worker processes (the ones it stops are retired through the scheduler first, so
their data moves), and `adapt()` drives that with `Adaptive` asking the scheduler over
the cluster's connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import shlex
import sys
from typing import Any

from shoal.deploy.cluster import Cluster
from shoal.security import Security
from shoal.status import Status

__all__ = ["Subprocess", "SubprocessCluster", "SubprocessScheduler", "SubprocessWorker"]

logger = logging.getLogger("shoal.deploy")

BANNER = "Scheduler at:"


class Subprocess:
    """One process of the cluster: `argv` (a `python -m shoal.cli ...` command) started
    with the secret in `SHOAL_SECRET`; its log lines are kept (`lines`)."""

    def __init__(self, argv: list[str], secret: bytes | None, env: dict[str, str] | None = None):
        self.argv = argv
        self.secret = secret
        self.env = dict(env or {})
        self.process: asyncio.subprocess.Process | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=1000)
        self._banner: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        self.status = Status.created

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = dict(os.environ, **self.env)
        env.pop("SHOAL_SECRET", None)
        if self.secret:
            env["SHOAL_SECRET"] = self.secret.hex()
        return await asyncio.create_subprocess_exec(
            *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def start(self) -> Subprocess:
        self._banner = asyncio.get_running_loop().create_future()
        self.process = await self._spawn()
        self._reader = asyncio.ensure_future(self._read())
        self.status = Status.running
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if BANNER in text and self._banner is not None and not self._banner.done():
                self._banner.set_result(text.split(BANNER, 1)[1].strip())
        code = await self.process.wait()
        if self._banner is not None and not self._banner.done():
            tail = "\n".join(list(self.lines)[-20:])
            self._banner.set_exception(RuntimeError(f"{shlex.join(self.argv)} exited with {code}:\n{tail}"))
            self._banner.exception()  # retrieved: only a scheduler's start waits for it

    async def wait_for_banner(self, timeout: float) -> str:
        assert self._banner is not None
        return await asyncio.wait_for(asyncio.shield(self._banner), timeout)

    async def wait_exit(self, timeout: float) -> None:
        """Give the process up to `timeout` s to exit by itself (after being told to)."""
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def close(self, timeout: float = 10) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.terminate()
                await asyncio.wait_for(self.process.wait(), timeout)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self.status = Status.closed


def scheduler_argv(python: str, scheduler_kwargs: dict) -> list[str]:
    """`shoal scheduler` with distributed's scheduler options as flags (`host`, `port`,
    `dashboard_address`: None for none, anything else the CLI takes)."""
    options = dict(scheduler_kwargs)
    host = options.pop("host", None) or "127.0.0.1"
    port = options.pop("port", 0)
    dashboard = options.pop("dashboard_address", None)
    argv = _cli(python) + ["scheduler", "--host", str(host), "--port", str(port or 0)]
    argv += ["--no-dashboard"] if dashboard is None else ["--dashboard-address", str(dashboard)]
    options.setdefault("log_level", "INFO")  # its banner says where it listens
    return argv + _flags(options)


def worker_argv(python: str, scheduler: str, worker_class: Any, name: Any, worker_kwargs: dict) -> list[str]:
    """`shoal worker SCHEDULER` (under a nanny unless `worker_class` is a plain Worker)."""
    argv = _cli(python) + ["worker", scheduler]
    if name is not None:
        argv += ["--name", str(name)]
    if str(getattr(worker_class, "__name__", worker_class)).endswith("Worker"):
        argv.append("--no-nanny")
    return argv + _flags(dict(worker_kwargs))


class SubprocessScheduler(Subprocess):
    """`shoal scheduler` in its own process (distributed's `SubprocessScheduler`):
    `scheduler_kwargs` become its flags; `start()` returns once it listens (`address`),
    or raises after `timeout` seconds."""

    def __init__(self, scheduler_kwargs: dict | None = None, timeout: float = 30, *, secret: bytes | None = None,
                 python: str | None = None):  # fmt: skip
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        self.timeout = timeout
        self.address: str | None = None
        super().__init__(scheduler_argv(python or sys.executable, self.scheduler_kwargs), secret)

    async def start(self) -> SubprocessScheduler:
        await super().start()
        self.address = await self.wait_for_banner(self.timeout)
        return self


class SubprocessWorker(Subprocess):
    """`shoal worker` in its own process (distributed's `SubprocessWorker`), with its
    nanny unless `worker_class` is a plain Worker; `worker_kwargs` become its flags. Also
    a worker spec of a `SpecCluster` (``{"cls": SubprocessWorker, "options": {...}}``):
    the cluster waits for a worker named `name` to register."""

    def __init__(self, scheduler: str, worker_class: Any = "distributed.Nanny", name: Any = None,
                 worker_kwargs: dict | None = None, *, secret: bytes | None = None,
                 python: str | None = None):  # fmt: skip
        self.scheduler_address = scheduler
        self.worker_class = worker_class
        self.name = name
        self.worker_kwargs = dict(worker_kwargs or {})
        super().__init__(worker_argv(python or sys.executable, scheduler, worker_class, name, self.worker_kwargs),
                         secret)  # fmt: skip


def _flags(options: dict) -> list[str]:
    """Keyword options as command-line flags: ``--key value``; a list repeats the flag
    (``preload=["a", "b"]``), True is the bare flag, False/None leave it out."""
    argv: list[str] = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def _cli(python: str) -> list[str]:
    return [python, "-m", "shoal.cli"]


class SubprocessCluster(Cluster):
    """A scheduler and `n_workers` workers in processes of their own on this machine."""

    _cluster_type = "SubprocessCluster"

    def __init__(
        self,
        host: str | None = None,
        scheduler_port: int = 0,
        scheduler_kwargs: dict | None = None,
        dashboard_address: Any = ":8787",
        worker_class: str = "distributed.Nanny",
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        worker_kwargs: dict | None = None,
        silence_logs: int = logging.WARN,
        asynchronous: bool = False,
        loop: Any = None,
        name: str | None = None,
        security: Any = None,
        start_timeout: float = 60,
    ):
        self.security = security if isinstance(security, Security) and security.secret else Security.temporary()
        super().__init__(asynchronous=asynchronous, loop=loop, name=name)
        self.host = host or "127.0.0.1"
        self.scheduler_port = int(scheduler_port)
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        self.dashboard_address = dashboard_address
        self.worker_class = worker_class
        cpu = os.cpu_count() or 1
        self.n_workers = int(n_workers if n_workers is not None else min(cpu, 4))
        self.threads_per_worker = int(threads_per_worker or max(1, cpu // max(1, self.n_workers)))
        self.worker_kwargs = dict(worker_kwargs or {})
        self.silence_logs = silence_logs
        self.start_timeout = start_timeout
        self.scheduler: Subprocess | None = None
        self.workers: dict[Any, Subprocess] = {}
        self._i = 0
        self._scaling: asyncio.Lock | None = None
        self._begin()

    # ------------------------------------------------------------------ processes (SSHCluster overrides)

    def _python(self, host: str) -> str:
        return sys.executable

    def _scheduler_kwargs(self) -> dict:
        return {"host": self.host, "port": self.scheduler_port, "dashboard_address": self.dashboard_address,
                **self.scheduler_kwargs}  # fmt: skip

    def _worker_kwargs(self, host: str) -> dict:
        level = logging.getLevelName(self.silence_logs) if self.silence_logs else "INFO"
        return {"nthreads": self.threads_per_worker, "host": host, **self.worker_kwargs, "log_level": level}

    def _new_scheduler(self) -> Subprocess:
        return SubprocessScheduler(self._scheduler_kwargs(), self.start_timeout, secret=self.security.secret,
                                   python=self._python(self.host))  # fmt: skip

    def _new_worker(self, name: str, host: str) -> Subprocess:
        return SubprocessWorker(self.scheduler_address, self.worker_class, name, self._worker_kwargs(host),
                                secret=self.security.secret, python=self._python(host))  # fmt: skip

    def _worker_hosts(self) -> list[str]:
        return [self.host]

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        self.scheduler = self._new_scheduler()
        await self.scheduler.start()
        self.scheduler_address = self.scheduler.address
        self._log(f"Scheduler at {self.scheduler_address}")
        await super()._start()
        await self._scale(self.n_workers)
        if self.n_workers:
            await self._client.wait_for_workers(self.n_workers, timeout=self.start_timeout)

    def _lock(self) -> asyncio.Lock:
        if self._scaling is None:
            self._scaling = asyncio.Lock()
        return self._scaling

    async def _scale(self, n: int) -> None:
        async with self._lock():
            while len(self.workers) < n:
                hosts = self._worker_hosts()
                host = hosts[self._i % len(hosts)]
                name = f"{self.name}-{self._i}"
                self._i += 1
                worker = self._new_worker(name, host)
                await worker.start()
                self.workers[name] = worker
                self._log(f"Worker {name} started")
        if len(self.workers) > n:
            newest = list(self.workers)[n:]
            await self.prune_closed()
            await self._retire(newest)
            await self._scale_down(newest)

    async def _retire(self, names: list) -> None:
        """Move the data only these workers hold to the others, and close them, through the scheduler."""
        observed = self.names_to_addresses(names)
        if observed:
            try:
                await self.scheduler_comm.retire_workers(workers=list(observed.values()), close_workers=True)
            except Exception as e:  # noqa: BLE001 - the processes are stopped regardless
                logger.warning("could not retire workers %s gracefully: %s", sorted(observed), e)

    async def _scale_down(self, names: Any) -> None:
        """Stop the processes of these workers (names or addresses)."""
        by_address = {a: n for n, a in self.names_to_addresses(names).items()}
        async with self._lock():
            closing = []
            for name in names:
                worker = self.workers.pop(by_address.get(name, name), None)
                if worker is not None:
                    closing.append(worker)
                    self._log(f"Worker {by_address.get(name, name)} closed")
            await asyncio.gather(*(w.close() for w in closing), return_exceptions=True)

    async def prune_closed(self) -> None:
        """Refresh what the scheduler sees and forget worker processes that exited by
        themselves (retired, killed) and are gone from the scheduler, so scaling replaces them."""
        await super().prune_closed()
        observed = self.observed
        for name, w in list(self.workers.items()):
            exited = w.process is not None and w.process.returncode is not None
            if exited and name not in observed:
                del self.workers[name]
                await w.close()

    @property
    def plan(self) -> set:
        return set(self.workers)

    @property
    def requested(self) -> set:
        return set(self.workers)

    def scale(self, n: int = 0, memory: Any = None, cores: Any = None) -> Any:
        """Run `n` worker processes (starting new ones, or retiring and stopping the newest)."""
        if memory is not None or cores is not None:
            raise NotImplementedError(f"{type(self).__name__}.scale: give a number of workers")
        return self.sync(self._scale, int(n))

    def scale_down(self, workers: Any) -> Any:
        """Retire these workers (names or addresses) through the scheduler and stop their processes."""

        async def down() -> None:
            await self.prune_closed()
            await self._retire(list(workers))
            await self._scale_down(list(workers))

        return self.sync(down)

    async def _close(self) -> None:
        if self.status == Status.closed:
            return
        self.status = Status.closing
        await self._stop_adaptive()
        # the scheduler closes itself and its workers: stopping only the local processes
        # is not enough over ssh, where killing the ssh client leaves the remote command
        # running (no terminal, so no hang-up reaches it)
        try:
            await asyncio.wait_for(self.scheduler_comm.terminate(), 5)
        except Exception:  # noqa: BLE001 - not connected, or gone already
            pass
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(w.wait_exit(5) for w in workers), return_exceptions=True)
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        await super()._close()
        if self.scheduler is not None:
            await self.scheduler.wait_exit(5)
            await self.scheduler.close()
        self.status = Status.closed

    async def _get_logs(self, cluster: bool, scheduler: bool, workers: Any) -> Any:
        logs = await super()._get_logs(cluster, False, False)
        from shoal.utils import Log

        if scheduler and self.scheduler is not None:
            logs["Scheduler"] = Log("\n".join(self.scheduler.lines))
        if workers:
            for name, w in self.workers.items():
                if workers is True or name in workers:
                    logs[name] = Log("\n".join(w.lines))
        return logs
