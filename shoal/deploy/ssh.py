"""`SSHCluster`: the scheduler on the first host and workers on the others, each started
over `ssh` (the OpenSSH client on this machine; keys and `~/.ssh/config` as usual), as
distributed's `distributed.deploy.ssh.SSHCluster`.

The secret never appears on a command line (which other users of a host can read): each
remote command reads it from its standard input, which `ssh` forwards, and exports it as
`SHOAL_SECRET` before `exec`ing `shoal`. The remote hosts need shoal installed for
`remote_python` (default: this Python's path).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from shoal.deploy.subprocess import Subprocess, SubprocessCluster, scheduler_argv, worker_argv

__all__ = ["SSHCluster", "Process", "Scheduler", "Worker"]

logger = logging.getLogger("shoal.deploy")


class Process(Subprocess):
    """A `shoal` command on a remote host, run as `ssh [options] HOST 'read secret; exec ...'`."""

    def __init__(self, host: str, argv: list[str], secret: bytes | None, ssh: Sequence[str] = ("ssh",)):
        self.host = host
        remote = "IFS= read -r SHOAL_SECRET; export SHOAL_SECRET; exec " + shlex.join(argv)
        super().__init__([*ssh, host, remote], secret)

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(((self.secret or b"").hex() + "\n").encode())
        await proc.stdin.drain()
        proc.stdin.close()
        return proc


def ssh_command(connect_options: Any) -> list[str]:
    """The `ssh` command line for `connect_options`: a list of ssh arguments
    (``["-p", "2222"]``) or a dict of `-o` options (``{"Port": 2222}``)."""
    if isinstance(connect_options, dict):
        return ["ssh"] + [arg for k, v in connect_options.items() for arg in ("-o", f"{k}={v}")]
    return ["ssh", *(connect_options or [])]


def _python(remote_python: Any, host: str) -> str:
    if isinstance(remote_python, dict):
        return remote_python.get(host) or sys.executable
    return remote_python or sys.executable


class Scheduler(Process):
    """`shoal scheduler` on host `address` over ssh (distributed's `ssh.Scheduler`):
    `kwargs` become its flags; `start()` returns once it listens (`self.address` is then
    the scheduler's address)."""

    def __init__(self, address: str, connect_options: Any = None, kwargs: dict | None = None,
                 remote_python: Any = None, *, secret: bytes | None = None, timeout: float = 60):  # fmt: skip
        self.kwargs = dict(kwargs or {})
        self.timeout = timeout
        argv = scheduler_argv(_python(remote_python, address), {"host": address, **self.kwargs})
        super().__init__(address, argv, secret, ssh_command(connect_options))
        self.address: str | None = None

    async def start(self) -> Scheduler:
        await super().start()
        self.address = await self.wait_for_banner(self.timeout)
        return self


class Worker(Process):
    """`shoal worker SCHEDULER` on host `address` over ssh (distributed's `ssh.Worker`),
    under a nanny unless `worker_class` is a plain Worker; `kwargs` become its flags."""

    def __init__(self, scheduler: str, address: str, connect_options: Any = None, kwargs: dict | None = None,
                 worker_class: Any = "distributed.Nanny", remote_python: Any = None, loop: Any = None,
                 name: Any = None, *, secret: bytes | None = None):  # fmt: skip
        self.scheduler_address = scheduler
        self.kwargs = dict(kwargs or {})
        self.name = name
        argv = worker_argv(_python(remote_python, address), scheduler, worker_class, name, self.kwargs)
        super().__init__(address, argv, secret, ssh_command(connect_options))


class SSHCluster(SubprocessCluster):
    """`SSHCluster(hosts=["sched-host", "worker-1", "worker-2"], ...)`: the scheduler on
    `hosts[0]`, one worker process per remaining host (`n_workers` in total, round
    robin). `connect_options` are `ssh` command-line options (`["-p", "2222"]`, or a
    dict of `-o` options); `worker_options` / `scheduler_options` become `shoal worker` /
    `shoal scheduler` flags."""

    _cluster_type = "SSHCluster"

    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        connect_options: Any = None,
        worker_options: dict | None = None,
        scheduler_options: dict | None = None,
        worker_module: str = "deprecated",
        worker_class: str = "distributed.Nanny",
        remote_python: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        name: str | None = None,
        security: Any = None,
        **kwargs: Any,
    ):
        if kwargs:
            raise TypeError(f"SSHCluster got unexpected keyword arguments: {sorted(kwargs)}")
        hosts = list(hosts or [])
        if len(hosts) < 2:
            raise ValueError("SSHCluster needs at least two hosts: the scheduler's and one worker's (they may repeat)")
        self.hosts = hosts
        self.connect_options = connect_options
        self.ssh = ssh_command(connect_options)
        self.remote_python = remote_python
        options = dict(scheduler_options or {})
        port = options.pop("port", 8786)
        dashboard = options.pop("dashboard_address", ":8787")
        super().__init__(
            host=hosts[0], scheduler_port=port, scheduler_kwargs=options, dashboard_address=dashboard,
            worker_class=worker_class, n_workers=len(hosts) - 1 if n_workers is None else n_workers,
            threads_per_worker=threads_per_worker, worker_kwargs=worker_options, asynchronous=asynchronous,
            loop=loop, name=name, security=security,
        )  # fmt: skip

    def _python(self, host: str) -> str:
        return _python(self.remote_python, host)

    def _new_scheduler(self) -> Subprocess:
        kwargs = {"port": self.scheduler_port, "dashboard_address": self.dashboard_address, **self.scheduler_kwargs}
        return Scheduler(self.host, self.connect_options, kwargs, self.remote_python, secret=self.security.secret,
                         timeout=self.start_timeout)  # fmt: skip

    def _new_worker(self, name: str, host: str) -> Subprocess:
        return Worker(self.scheduler_address, host, self.connect_options, self._worker_kwargs(host),
                      self.worker_class, self.remote_python, name=name, secret=self.security.secret)  # fmt: skip

    def _worker_hosts(self) -> list[str]:
        return self.hosts[1:]
