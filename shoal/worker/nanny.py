"""`Nanny`: supervises one worker process and restarts it when it dies or uses too much memory.

The nanny runs in the process that starts it (a `LocalCluster`, `shoal worker`) and starts
`python -m shoal.worker` as a child. It does not listen on any port: it connects to the
scheduler itself, registers as a nanny, and the scheduler reaches it over that connection
(`restart`). The worker child writes its address to a pipe once it has started, so the
nanny knows it is up (and that a child which dies before that failed to start).

Every `shoal.worker.memory.monitor-interval` the nanny checks its child:

- exited while the nanny and its scheduler connection are up: log why (exit code or
  signal), record a `worker-restart` event on the scheduler, start a new worker;
- resident memory above `terminate` (`shoal.worker.memory.terminate`, 0.95) × its
  `memory_limit`: log "exceeded 95% memory budget", record a `worker-restart-memory`
  event, tell the scheduler the reason (it becomes the worker's removal reason), send
  SIGTERM (SIGKILL if still alive on the next check), then start a new worker.

When the scheduler connection closes the nanny closes too, stopping its worker: a
scheduler that went away is not a reason to restart anything. Each worker process gets a
fresh local directory, removed by the nanny once the process is gone.

Nanny plugins (`NannyPlugin`): the scheduler hands the ones it keeps to the nanny when it
registers, and they are set up before the first worker process starts; plugins
registered later arrive as `plugin_add` (one with `restart` restarts the worker). They
stay in the nanny across worker restarts and are torn down when it closes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import dask.config
import psutil
from dask.utils import format_bytes

from shoal import config, log_buffer, secret_files, server_options
from shoal import config as _config
from shoal.preloading import Preloads
from shoal.worker.options import checked_worker_kwargs, is_shoal_worker, write_worker_options
from shoal.status import StatusAttribute
from shoal._loop import wait_exit
from shoal.comm import connect
from shoal.protocol.serialize import loads
from shoal.protocol.requests import NANNY_REQUESTS, check_packet
from shoal.rpc import Peer
from shoal.rpc.server import Server
from shoal.versions import get_versions

logger = logging.getLogger("shoal.nanny")

#: consecutive failed starts after which a nanny gives up restarting its worker
MAX_FAILED_STARTS = 3


def worker_process_env(
    secret: bytes | None, extra: dict[str, str] | None = None, inherit_config: str | None = None
) -> dict[str, str]:
    """The environment of a worker process: this process's import paths (so workers can
    import what the user's process can), one BLAS thread, the secret (never argv), and
    the dask configuration (`inherit_config`, else this process's now; see
    `config.inherited`)."""
    env = dict(os.environ)
    env[config.INHERIT_VAR] = inherit_config if inherit_config is not None else config.inherited()
    env.pop("SHOAL_SECRET", None)
    if secret:
        env["SHOAL_SECRET"] = secret.hex()
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    if "" in sys.path or os.getcwd() not in paths:
        paths.insert(0, os.getcwd())
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    if extra:
        env.update(extra)
    return env


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


class Nanny(Server):
    """Supervise a worker process. `await Nanny(scheduler_address, ...)` starts it (and its
    worker); `close()` stops both. Worker options are those of `Worker`. The life cycle
    and background tasks are `shoal.rpc.server.Server`'s."""

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
        env: dict[str, str] | None = None,
        death_timeout: float | None = None,
        memory_terminate_fraction: float | None = None,
        monitor_interval: float | None = None,
        log_level: str | None = None,
        port: Any = None,
        worker_port: int | None = None,
        config: dict | None = None,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        scheduler_file: str | None = None,
        security: Any = None,
        interface: str | None = None,
        protocol: str | None = None,
        validate: bool = False,
        quiet: bool = False,
        silence_logs: Any = None,
        preload: Any = None,
        preload_argv: Any = None,
        preload_nanny: Any = None,
        preload_nanny_argv: Any = None,
        services: Any = None,
        reconnect: Any = None,
        contact_address: str | None = None,
        listen_address: str | None = None,
        worker_class: Any = None,
        **worker_kwargs: Any,
    ):
        """As distributed's `Nanny`: `worker_port` is the port its worker process listens
        on; `port` is accepted for compatibility, though a shoal nanny listens on no port
        (it connects out to the scheduler); `config` is dask configuration set in the
        worker processes it starts (on top of this process's, which they inherit).
        The scheduler is `scheduler_address`, or `scheduler_ip` (+ `scheduler_port`), or
        read from `scheduler_file` (with its secret) when the nanny starts. `preload` runs
        in each worker process, `preload_nanny` in this one (`shoal.preloading`); other
        keyword arguments are the worker's (`shoal.worker.server.Worker`'s parameters,
        checked here). Options of distributed's shoal does not honour are refused by name
        (`shoal.server_options`)."""
        server_options.refuse(
            "Nanny", services=services, reconnect=reconnect, contact_address=contact_address,
            listen_address=listen_address,
        )  # fmt: skip
        if worker_class is not None and not is_shoal_worker(worker_class):
            server_options.refuse("Nanny", worker_class=worker_class)
        server_options.check_protocol("Nanny", protocol)
        self.worker_kwargs = checked_worker_kwargs(worker_kwargs)
        overrides, config = config, _config
        if port not in (None, 0) and not isinstance(port, (int, str)):
            raise TypeError(f"port must be an int or a str, got {type(port).__name__}")
        self.port = port
        self.worker_port = int(worker_port or 0)
        super().__init__("nanny")
        if scheduler_address is None:
            scheduler_address = server_options.scheduler_address(scheduler_ip, scheduler_port)
        if scheduler_address is None and scheduler_file is None:
            raise TypeError("Nanny needs the scheduler: scheduler_address, scheduler_ip or scheduler_file")
        self.scheduler_file = scheduler_file
        self.scheduler_address = scheduler_address
        self.nthreads = int(nthreads)
        self.name = name
        self.memory_limit = int(memory_limit or 0)
        self.resources = resources
        if secret is None and security is not None:
            secret = getattr(security, "secret", None)
        # none given: a scheduler this user started on this machine (shoal.secret_files)
        self.secret = secret if secret is not None or scheduler_address is None else secret_files.lookup(scheduler_address)
        self.host = host if host is not None else (
            server_options.host_of_interface(interface) if interface else "127.0.0.1"
        )  # fmt: skip
        self.validate = bool(validate)
        self.quiet = bool(quiet)
        self.preload = Preloads.from_options(preload, preload_argv)  # checked here, run in the worker process
        names = [preload] if isinstance(preload, str) else list(preload or ())
        names = [os.path.abspath(n) if n.endswith(".py") and os.path.isfile(n) else n for n in names]
        self._preload_names = (names, preload_argv)  # the worker process may start elsewhere
        self.preload_nanny = Preloads.from_options(preload_nanny, preload_nanny_argv)
        self.local_directory = local_directory
        self.env = dict(env or {})
        #: the configuration as it is now, for every worker this nanny starts, restarts too
        if overrides:
            with dask.config.set(overrides):
                self._config = config.inherited()
        else:
            self._config = config.inherited()
        # glibc: give freed memory back to the OS (trim the heap's top beyond 64 KiB), but
        # serve blocks under 4 MiB from the heap rather than fresh mmaps: with the trim
        # threshold set, glibc stops adapting its 128 KiB mmap threshold, and every
        # shuffle piece or partition then costs page faults on each allocation (a fifth
        # of a worker's CPU in a task shuffle). Blocks of 4 MiB and more still go back
        # to the OS as soon as they are freed.
        self.env.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
        self.env.setdefault("MALLOC_MMAP_THRESHOLD_", "4194304")
        self.death_timeout = death_timeout
        fraction = (
            config.get("worker.memory.terminate") if memory_terminate_fraction is None else memory_terminate_fraction
        )
        self.memory_terminate_fraction: float | None = float(fraction) if fraction else None
        self.monitor_interval = (
            config.get_timedelta("worker.memory.monitor-interval") if monitor_interval is None else monitor_interval
        )
        if log_level is None and silence_logs:
            log_level = logging.getLevelName(silence_logs) if isinstance(silence_logs, int) else str(silence_logs)
        self.log_level = log_level or logging.getLevelName(logging.getLogger("shoal").getEffectiveLevel())
        self.id = f"Nanny-{uuid.uuid4()}"
        self.process: subprocess.Popen | None = None
        self.worker_address: str | None = None
        self.worker_dir: str | None = None
        self.scheduler: Peer | None = None
        self.restarts = 0
        self._ps: psutil.Process | None = None
        self._terminating_pid: int | None = None
        self._exit_reason: str | None = None
        self._busy = asyncio.Lock()  # one start/stop of the child at a time
        #: nanny plugins by name (`shoal.diagnostics.plugin.NannyPlugin`)
        self.plugins: dict[str, Any] = {}
        self.handlers.update({
            "restart": self._handle_restart,
            "terminate": self._handle_terminate,
            "get_logs": self._get_logs,
            "plugin_add": self._handle_plugin_add,
            "plugin_remove": self._handle_plugin_remove,
        })

    # ------------------------------------------------------------------ introspection

    @property
    def pid(self) -> int | None:
        """The process id of the current worker process."""
        return self.process.pid if self.process is not None else None

    @property
    def address(self) -> str | None:
        """The address of the current worker (the nanny itself does not listen)."""
        return self.worker_address

    def __repr__(self) -> str:
        return f"<Nanny {self.id} worker={self.worker_address!r} status={self.status}>"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Nanny:
        if self.status == "running":
            return self
        self.status = "starting"
        log_buffer.install()
        info = {"role": "nanny", "id": self.id, "versions": get_versions()}
        timeout = self.death_timeout or config.get_timedelta("comm.timeouts.connect")
        try:
            if self.scheduler_address is None:
                from shoal.scheduler_file import read_scheduler_file, secret_from

                found = await asyncio.to_thread(read_scheduler_file, self.scheduler_file, self.death_timeout)
                self.scheduler_address = found["address"]
                if self.secret is None:
                    self.secret = secret_from(found) or secret_files.lookup(self.scheduler_address)
            comm = await connect(self.scheduler_address, secret=self.secret, timeout=timeout, info=info)
            self.scheduler = Peer(comm, self.handlers, accepts=_from_scheduler)
            self.scheduler.start()
            registered = await self.scheduler.request("register_nanny", nanny_id=self.id)
            for name, plugin in (registered or {}).get("plugins", ()):
                try:
                    await self.plugin_add(loads(plugin), name)
                except Exception:  # the worker still starts, as for failing worker setups
                    logger.exception("nanny plugin %r failed to set up on %s", name, self.id)
            async with self._busy:
                await self._start_worker()
        except Exception as e:  # as distributed: one exception type for a failed start
            await self.close()
            raise RuntimeError(f"Nanny failed to start: {e}") from e
        except BaseException:
            await self.close()
            raise
        self.status = "running"
        self.spawn(self._monitor())
        self.spawn(self._watch_scheduler())
        try:
            await self.preload_nanny.start(self)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self, timeout: float = 5.0) -> None:
        if self.status in ("closing", "closed"):
            await self._closed.wait()
            return
        self.status = "closing"
        await self.preload_nanny.teardown(self)
        await self.background.close()
        await self._stop_worker(timeout)
        for name in list(self.plugins):
            try:
                await self.plugin_remove(name)
            except Exception:
                logger.exception("teardown of nanny plugin %r failed", name)
        if self.scheduler is not None:
            await self.scheduler.close()
        self.closed()

    async def _watch_scheduler(self) -> None:
        assert self.scheduler is not None
        reader = self.scheduler.reader
        if reader is not None:
            try:
                await asyncio.shield(reader)
            except asyncio.CancelledError:
                if self.status != "running":
                    raise
        if self.status == "running":
            logger.info("Nanny %s lost its scheduler connection; closing it and its worker", self.id)
            self.spawn(self.close())

    # ------------------------------------------------------------------ the worker process

    async def _start_worker(self) -> None:
        """Start a worker process and wait until it says it is up (its address)."""
        base = self.local_directory or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        self.worker_dir = tempfile.mkdtemp(prefix="shoal-worker-", dir=base)
        read_fd, write_fd = os.pipe()
        cmd = [
            sys.executable, "-m", "shoal.worker", self.scheduler_address,
            "--nthreads", str(self.nthreads), "--name", json.dumps(self.name),
            "--memory-limit", str(self.memory_limit), "--host", self.host,
            "--nanny", self.id, "--local-directory", self.worker_dir,
            "--announce-fd", str(write_fd), "--log-level", self.log_level,
            "--port", str(self.worker_port),
        ]  # fmt: skip
        if self.resources:
            cmd += ["--resources", json.dumps(self.resources)]
        if self.death_timeout:
            cmd += ["--death-timeout", str(self.death_timeout)]
        options = dict(self.worker_kwargs)
        if self._preload_names[0]:
            options.update(preload=self._preload_names[0], preload_argv=self._preload_names[1])
        if self.validate:
            options["validate"] = True
        if options:  # a file only its owner reads (the options may hold objects: pickled)
            cmd += ["--options", write_worker_options(self.worker_dir, options)]
        try:
            self.process = subprocess.Popen(
                cmd, env=worker_process_env(self.secret, self.env, self._config), stdin=subprocess.DEVNULL, pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)
        self._ps = None
        self._terminating_pid = None
        self._exit_reason = None
        try:
            line = await asyncio.wait_for(_read_line(read_fd), config.get_timedelta("deploy.worker-start-timeout"))
        except asyncio.TimeoutError:
            await self._stop_worker(1.0)
            raise TimeoutError(f"worker process of nanny {self.id} did not start in time") from None
        finally:
            os.close(read_fd)
        if not line:
            code = await self._wait_exit(5.0)
            await self._stop_worker(1.0)
            detail = describe_exit(code) if code is not None else "closed its start-up pipe"
            raise RuntimeError(f"worker process of nanny {self.id} failed to start: it {detail}")
        self.worker_address = line
        logger.info("Nanny %s started worker %s (pid %d)", self.id, line, self.process.pid)

    async def _wait_exit(self, timeout: float) -> int | None:
        proc = self.process
        if proc is None:
            return None
        return await wait_exit(proc, timeout)

    async def _stop_worker(self, timeout: float) -> None:
        """SIGTERM the worker process, SIGKILL it after `timeout` s; remove its directory."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            if await self._wait_exit(timeout) is None:
                logger.info("Worker process %d still alive %.1f s after SIGTERM; sending SIGKILL", proc.pid, timeout)
                proc.kill()
                await self._wait_exit(30.0)
        if self.worker_dir is not None:
            shutil.rmtree(self.worker_dir, ignore_errors=True)
            self.worker_dir = None

    async def restart(self, timeout: float = 30.0, reason: str = "nanny-restart") -> None:
        """Stop the worker process (SIGTERM, then SIGKILL) and start a new one."""
        async with self._busy:
            old = self.worker_address
            if old is not None and self.scheduler is not None and not self.scheduler.closed:
                try:
                    await asyncio.wait_for(self.scheduler.request("worker_exit_reason", worker=old, reason=reason), 1.0)
                except Exception:
                    pass
            await self._stop_worker(min(5.0, timeout / 4))
            self.worker_address = None
            if self.status in ("running", "starting"):
                await self._start_worker()
                self.restarts += 1

    async def _handle_restart(self, peer: Peer, reason: str = "nanny-restart", timeout: float = 30.0) -> None:
        logger.info("Nanny %s restarting its worker (%s)", self.id, reason)
        await self.restart(timeout=timeout, reason=reason)

    # ------------------------------------------------------------------ plugins

    async def plugin_add(self, plugin: Any, name: str) -> None:
        """Add a nanny plugin (replacing, after its teardown, one of the same name) and
        run its `setup(nanny)`; errors are raised. A plugin with `restart` restarts the
        running worker afterwards, so the new process starts with what `setup` did."""
        if name in self.plugins:
            await self.plugin_remove(name)
        self.plugins[name] = plugin
        setup = getattr(plugin, "setup", None)
        if setup is not None:
            result = setup(nanny=self)
            if inspect.isawaitable(result):
                await result
        if getattr(plugin, "restart", False) and self.status == "running" and self.worker_address is not None:
            await self.restart(reason=f"nanny-plugin-{name}")

    async def plugin_remove(self, name: str) -> None:
        """Remove plugin `name` and run its `teardown(nanny)`; errors are raised."""
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"The nanny plugin {name} does not exist")
        teardown = getattr(plugin, "teardown", None)
        if teardown is not None:
            result = teardown(nanny=self)
            if inspect.isawaitable(result):
                await result

    async def _handle_plugin_add(self, peer: Peer, plugin: Any, name: str) -> dict:
        await self.plugin_add(loads(plugin), name)
        return {"status": "OK"}

    async def _handle_plugin_remove(self, peer: Peer, name: str) -> dict:
        await self.plugin_remove(name)
        return {"status": "OK"}

    async def _handle_terminate(self, peer: Peer, reason: str = "terminate") -> None:
        """Stop the worker for good and close this nanny (`retire_workers`): answered once
        the worker process is gone, then the nanny closes."""
        logger.info("Nanny %s stopping its worker for good (%s)", self.id, reason)
        self.status = "closing-gracefully"  # the monitor must not restart the worker
        async with self._busy:
            await self._stop_worker(5.0)
        asyncio.get_running_loop().call_soon(lambda: self.spawn(self.close()))

    def _get_logs(self, peer: Peer, n: int | None = None) -> list:
        return log_buffer.recent(n)

    def _log_event(self, topic: Any, msg: dict) -> None:
        if self.scheduler is not None and not self.scheduler.closed:
            self.scheduler.notify("log_event", topic=topic, msg=msg)

    async def _monitor(self) -> None:
        failed_starts = 0
        while self.status == "running":
            await asyncio.sleep(self.monitor_interval)  # RSS can only be sampled: poll
            if self._busy.locked():
                continue  # a restart is under way
            proc = self.process
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                await self._check_memory(proc)
                continue
            if self.status != "running" or self.scheduler is None or self.scheduler.closed:
                return
            async with self._busy:
                if self._exit_reason is None:  # not killed by us for memory: say what happened
                    reason = describe_exit(code)
                    logger.warning("Worker %s (pid=%d) %s; restarting it", self.worker_address, proc.pid, reason)
                    event = {"worker": self.worker_address, "pid": proc.pid, "exit_code": code, "reason": reason,
                             "nanny_pid": os.getpid()}  # fmt: skip
                    self._log_event(["worker-restart", self.worker_address], event)
                await self._stop_worker(1.0)
                self.worker_address = None
                try:
                    await self._start_worker()
                    self.restarts += 1
                    failed_starts = 0
                except Exception as e:
                    failed_starts += 1
                    logger.error("Nanny %s could not restart its worker: %s", self.id, e)
                    if failed_starts >= MAX_FAILED_STARTS:
                        logger.error("Nanny %s gives up after %d failed starts", self.id, failed_starts)
                        self.spawn(self.close())
                        return

    async def _check_memory(self, proc: subprocess.Popen) -> None:
        if not self.memory_limit or not self.memory_terminate_fraction:
            return
        try:
            if self._ps is None or self._ps.pid != proc.pid:
                self._ps = psutil.Process(proc.pid)
            rss = self._ps.memory_info().rss
        except psutil.Error:
            return  # gone: the exit is seen on the next check
        if rss <= self.memory_terminate_fraction * self.memory_limit:
            return
        if self._terminating_pid == proc.pid:
            logger.info("Worker %s (pid=%d) is slow to accept SIGTERM; sending SIGKILL", self.worker_address, proc.pid)
            proc.kill()
            return
        pct = f"{self.memory_terminate_fraction * 100:.0f}%"
        reason = (
            f"exceeded {pct} memory budget (process memory {format_bytes(rss)} of memory_limit "
            f"{format_bytes(self.memory_limit)})"
        )
        logger.warning(
            "Worker %s (pid=%d) exceeded %s memory budget (%s of %s). Restarting...", self.worker_address, proc.pid,
            pct, format_bytes(rss), format_bytes(self.memory_limit),
        )  # fmt: skip
        self._terminating_pid = proc.pid
        self._exit_reason = reason
        event = {"worker": self.worker_address, "pid": proc.pid, "rss": rss, "memory_limit": self.memory_limit,
                 "reason": reason, "nanny_pid": os.getpid()}  # fmt: skip
        self._log_event(["worker-restart-memory", self.worker_address], event)
        if self.scheduler is not None and self.worker_address is not None:
            try:  # the scheduler learns the reason before the connection drops
                await asyncio.wait_for(
                    self.scheduler.request("worker_exit_reason", worker=self.worker_address, reason=reason), 1.0
                )
            except Exception:
                pass
        proc.terminate()


async def _read_line(fd: int) -> str:
    """Read from pipe `fd` until a newline or end of file, without blocking the loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    done: asyncio.Future = loop.create_future()
    buf = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        buf.extend(chunk)
        if (not chunk or b"\n" in buf) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(buf).split(b"\n", 1)[0].decode().strip()


def _from_scheduler(peer: Peer, msgs: list) -> str | None:
    """A nanny takes only calls of its operations (`shoal.protocol.requests`) and replies."""
    return check_packet(msgs, NANNY_REQUESTS, None, "a nanny")
