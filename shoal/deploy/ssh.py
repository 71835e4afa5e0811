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
from collections.abc import Sequence
from typing import Any

from shoal.deploy.subprocess import Subprocess, SubprocessCluster

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


class Scheduler(Process):
    """The scheduler's process on the first host."""


class Worker(Process):
    """A worker's process on a worker host."""


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
        if isinstance(connect_options, dict):
            self.ssh = ["ssh"] + [arg for k, v in connect_options.items() for arg in ("-o", f"{k}={v}")]
        else:
            self.ssh = ["ssh", *(connect_options or [])]
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
        if isinstance(self.remote_python, dict):
            return self.remote_python.get(host) or super()._python(host)
        return self.remote_python or super()._python(host)

    def _process(self, argv: list[str], host: str) -> Subprocess:
        return Process(host, argv, self.security.secret, self.ssh)

    def _worker_hosts(self) -> list[str]:
        return self.hosts[1:]
