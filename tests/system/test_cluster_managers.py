"""Cluster managers whose scheduler is not in the user's process: `SubprocessCluster`,
`SSHCluster` (over a stand-in `ssh` that runs the remote command on this machine), and
the `Cluster` base class a third-party manager subclasses."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from shoal import Client
from shoal.core import Status
from shoal.deploy import Cluster, SSHCluster, SubprocessCluster
from shoal.deploy.cluster import Cluster as ClusterAtItsPath
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker

pytestmark = pytest.mark.system


def test_subprocess_cluster():
    with SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        assert cluster.status == Status.running and isinstance(cluster.status, Status)
        assert isinstance(cluster, Cluster)
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(sum, [1, 2, 3]).result() == 6
            assert len(c.nthreads()) == 2
            assert c.run_on_scheduler(os.getpid) != os.getpid(), "the scheduler runs in its own process"
        cluster.scale(1)
        assert len(cluster.workers) == 1
        logs = cluster.get_logs()
        assert "Scheduler at:" in logs["Scheduler"]
    assert cluster.status == Status.closed


FAKE_SSH = """#!/bin/sh
# a stand-in for ssh: skip the options and the host, run the command here
while [ "$#" -gt 2 ]; do
    case "$1" in -o|-p|-i|-l) shift 2 ;; *) shift ;; esac
done
echo "$1" >> "{log}"
exec sh -c "$2"
"""


def test_ssh_cluster_over_a_stand_in_ssh(tmp_path, monkeypatch):
    log = tmp_path / "ssh.log"
    ssh = tmp_path / "bin" / "ssh"
    ssh.parent.mkdir()
    ssh.write_text(FAKE_SSH.format(log=log))
    ssh.chmod(ssh.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{ssh.parent}{os.pathsep}{os.environ['PATH']}")
    hosts = ["127.0.0.1", "127.0.0.1", "127.0.0.1"]
    with SSHCluster(hosts, connect_options={"StrictHostKeyChecking": "no"},
                    scheduler_options={"port": 0, "dashboard_address": None}) as cluster:  # fmt: skip
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(sum, [4, 5]).result() == 9
            assert len(c.nthreads()) == 2
    assert log.read_text().split() == ["127.0.0.1"] * 3  # one ssh per process, each naming its host
    # the secret travelled on stdin, never on a command line
    assert cluster.security.secret.hex() not in " ".join(cluster.scheduler.argv)


def test_ssh_cluster_needs_two_hosts():
    with pytest.raises(ValueError, match="at least two hosts"):
        SSHCluster(["only-one"])


class InProcessManager(Cluster):
    """What a third-party cluster manager looks like: start a scheduler somewhere, set
    scheduler_address, let the base class do the rest."""

    async def _start(self):
        self.scheduler = await Scheduler("tcp://127.0.0.1:0", dashboard_address=None)
        self.scheduler_address = self.scheduler.address
        self.worker = await Worker(self.scheduler_address, nthreads=1)
        await super()._start()

    async def _close(self):
        await super()._close()
        await self.worker.close()
        await self.scheduler.close()


def test_third_party_cluster_subclass():
    assert ClusterAtItsPath is Cluster

    async def run():
        async with InProcessManager(asynchronous=True) as cluster:
            assert cluster.status == Status.running
            async with Client(cluster, asynchronous=True, set_as_default=False) as c:
                assert await c.submit(sum, [1, 1]) == 2
            await cluster._wait_for_workers(1, 10)
            assert len(cluster.scheduler_info["workers"]) == 1
            assert "InProcessManager" in repr(cluster)
        return cluster.status

    assert asyncio.run(run()) == Status.closed
