"""Cluster managers whose scheduler is not in the user's process: `SubprocessCluster`,
`SSHCluster` (over a stand-in `ssh` that runs the remote command on this machine), and
the `Cluster` base class a third-party manager subclasses."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess

import pytest

from shoal import Client
from shoal.core import Status
from shoal.deploy import Cluster, SSHCluster, SubprocessCluster
from shoal.deploy.cluster import Cluster as ClusterAtItsPath
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker

pytestmark = pytest.mark.system


def test_subprocess_cluster():
    with SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, worker_class="Worker") as cluster:
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
    hosts = ["127.0.0.1", "127.0.0.1"]
    with SSHCluster(hosts, connect_options={"StrictHostKeyChecking": "no"}, worker_class="distributed.Worker",
                    scheduler_options={"port": 0, "dashboard_address": None}) as cluster:  # fmt: skip
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(sum, [4, 5]).result() == 9
            assert len(c.nthreads()) == 1
    assert log.read_text().split() == ["127.0.0.1"] * 2  # one ssh per process, each naming its host
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


def _adapt_round_trip(cluster, poll):
    """No workers at first; adapt() starts worker processes for queued work, then stops
    them once they are idle (their results released)."""
    adaptive = cluster.adapt(minimum=0, maximum=2, interval="100ms", wait_count=2, target_duration="100ms")
    assert cluster.adapt(interval="100ms") is not adaptive and cluster._adaptive_options["maximum"] == 2

    def slow(x):
        import time

        time.sleep(0.2)
        return x + 1

    with Client(cluster, set_as_default=False) as c:
        futures = c.map(slow, range(12))
        assert c.gather(futures) == list(range(1, 13))
        assert cluster._adaptive.log and cluster._adaptive.log[0][1]["status"] == "up"
        del futures
        poll(lambda: not cluster.workers and not c.nthreads(), timeout=60)
    assert any(rec["status"] == "down" for _, rec in cluster._adaptive.log)


def test_subprocess_cluster_adapts(poll):
    with SubprocessCluster(n_workers=0, threads_per_worker=1, dashboard_address=None, worker_class="Worker") as cluster:
        _adapt_round_trip(cluster, poll)
        assert cluster._adaptive.state == "running"
    assert cluster._adaptive is None  # stopped with the cluster


def test_subprocess_cluster_scale_down_keeps_data(poll):
    with SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, worker_class="Worker") as cluster:
        with Client(cluster, set_as_default=False) as c:
            c.wait_for_workers(2)
            futures = c.scatter(list(range(8)))  # spread over both; scattered data cannot be recomputed
            assert len({w for ws in c.who_has(futures).values() for w in ws}) == 2
            cluster.scale(1)  # the newest is retired first: what only it held moves
            assert len(cluster.workers) == 1 and len(c.nthreads()) == 1
            assert c.gather(futures) == list(range(8))


def test_ssh_cluster_adapts_over_a_stand_in_ssh(tmp_path, monkeypatch, poll):
    log = tmp_path / "ssh.log"
    ssh = tmp_path / "bin" / "ssh"
    ssh.parent.mkdir()
    ssh.write_text(FAKE_SSH.format(log=log))
    ssh.chmod(ssh.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{ssh.parent}{os.pathsep}{os.environ['PATH']}")
    with SSHCluster(["127.0.0.1", "127.0.0.1"], worker_class="distributed.Worker", n_workers=0,
                    scheduler_options={"port": 0, "dashboard_address": None}) as cluster:  # fmt: skip
        _adapt_round_trip(cluster, poll)
    assert len(log.read_text().split()) >= 2  # the scheduler and at least one worker, each over ssh


def _sshd_binary() -> str | None:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    return os.path.abspath(found) if found else None  # sshd re-executes itself: an absolute path


@pytest.fixture
def sshd(tmp_path, poll):
    """A private OpenSSH server on 127.0.0.1 accepting one generated key, as this user."""
    binary = _sshd_binary()
    if binary is None:
        pytest.skip("no OpenSSH server (sshd) on this machine; .ci/run installs the Debian package openssh-server")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp_path / 'user_key.pub'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
    )
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)

    def listening() -> bool:
        if proc.poll() is not None:  # this machine's sshd cannot run as this user here: say why
            pytest.skip(f"the OpenSSH server did not start: {proc.stderr.read().decode().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    poll(listening, timeout=30)
    options = ["-p", str(port), "-i", str(tmp_path / "user_key"), "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]  # fmt: skip
    yield options
    proc.terminate()
    proc.wait(timeout=30)


def test_ssh_cluster_over_real_ssh_adapts(sshd, poll):
    with SSHCluster(["127.0.0.1", "127.0.0.1"], connect_options=sshd, worker_class="distributed.Worker",
                    scheduler_options={"port": 0, "dashboard_address": None}) as cluster:  # fmt: skip
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(sum, [2, 3]).result() == 5
            scheduler_pid = c.run_on_scheduler(os.getpid)
            worker_pids = set(c.run(os.getpid).values())
            assert scheduler_pid != os.getpid()
        cluster.scale(0)
        assert not cluster.workers
        _adapt_round_trip(cluster, poll)
    # the remote commands end with the cluster (killing the ssh client alone leaves them)
    import psutil

    poll(lambda: not any(psutil.pid_exists(p) for p in {scheduler_pid, *worker_pids}), timeout=30)


def test_subprocess_cluster_passes_distributed_options_as_flags(tmp_path):
    script = tmp_path / "mark.py"
    script.write_text("def dask_setup(server):\n    server.preload_mark = type(server).__name__\n")
    with SubprocessCluster(
        n_workers=1, threads_per_worker=1, dashboard_address=None,
        worker_kwargs={"preload": [str(script)], "lifetime": "1 hour", "lifetime_restart": True},
        scheduler_kwargs={"preload": [str(script)], "idle_timeout": "1 hour"},
    ) as cluster:  # fmt: skip
        with Client(cluster, set_as_default=False) as c:
            # in the nanny's worker process; the worker's options arrived as they were given
            marks = c.run(lambda dask_worker: (dask_worker.preload_mark, dask_worker.options.lifetime_restart,
                                               dask_worker.options.lifetime))  # fmt: skip
            assert list(marks.values()) == [("Worker", True, 3600.0)]
            assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.preload_mark) == "Scheduler"
            assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.options.idle_timeout) == 3600


def test_subprocess_worker_as_a_spec_clusters_worker():
    from shoal.deploy import SpecCluster
    from shoal.deploy.subprocess import SubprocessWorker

    spec = {"cls": SubprocessWorker, "options": {"worker_class": "distributed.Worker", "worker_kwargs": {"nthreads": 2}}}
    with SpecCluster(workers={"sub-0": spec}, scheduler={"cls": Scheduler, "options": {"address": "tcp://127.0.0.1:0",
                     "dashboard_address": None}}) as cluster:  # fmt: skip
        (worker,) = cluster.workers.values()
        assert isinstance(worker, SubprocessWorker) and worker.name == "sub-0"
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(sum, [1, 2]).result() == 3
            assert list(c.nthreads().values()) == [2]
            assert os.getpid() not in c.run(os.getpid).values()  # its own process
        cluster.scale(0)
        assert not cluster.workers and worker.status == Status.closed
