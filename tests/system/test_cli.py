"""The `shoal` command line, run for real: `shoal scheduler` and `shoal worker` processes,
a client that finds them through a scheduler file, the secret they enforce, and clean
exits on SIGTERM/SIGINT and `Client.shutdown()`."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import shoal
from shoal import Client, Security

pytestmark = pytest.mark.system

ROOT = str(Path(shoal.__file__).resolve().parent.parent)


def shoal_cli(*args: str, stderr: Path, env: dict | None = None) -> subprocess.Popen:
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join([ROOT, environ.get("PYTHONPATH", "")])
    with open(stderr, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "shoal.cli", *args], env=environ, stdin=subprocess.DEVNULL, stderr=err
        )


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_scheduler_and_two_workers_through_a_scheduler_file(tmp_path):
    da = pytest.importorskip("dask.array")
    sfile = tmp_path / "scheduler.json"
    sched = shoal_cli("scheduler", "--port", "0", "--scheduler-file", str(sfile), stderr=tmp_path / "s.log")
    workers = shoal_cli(
        "worker", "--scheduler-file", str(sfile), "--nworkers", "2", "--nthreads", "1", "--name", "w",
        "--memory-limit", "1GiB", stderr=tmp_path / "w.log",
    )  # fmt: skip
    try:
        with Client(scheduler_file=str(sfile), timeout=30, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
            info = c.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["w-0", "w-1"]
            assert all(w["nanny"] and w["memory_limit"] == 2**30 for w in info.values())
            x = da.arange(100_000, chunks=10_000)
            assert c.compute(x.sum()).result(timeout=60) == sum(range(100_000))
            # the CLI's nannies restart their workers, which come back with their names
            before = set(info)
            c.restart(timeout=60)
            info = c.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["w-0", "w-1"] and not before & set(info)
            assert c.compute(x.sum()).result(timeout=60) == sum(range(100_000))
            # the file holds a generated secret, readable by its owner only
            assert stat.S_IMODE(sfile.stat().st_mode) == 0o600
            content = json.loads(sfile.read_text())
            assert content["address"] == c.scheduler_info()["address"] and content["shoal-secret"]
            with pytest.raises(OSError):
                Client(content["address"], security=False, timeout=5, set_as_default=False)
            # the same user on this machine finds the secret by address (its secret file)
            with Client(content["address"], timeout=5, set_as_default=False) as by_address:
                assert len(by_address.nthreads()) == 2
            with pytest.raises(OSError):
                Client(content["address"], security=Security(b"wrong"), timeout=5, set_as_default=False)
            worker_pids = list(c.run(os.getpid).values())
            c.shutdown()
        assert sched.wait(30) == 0
        assert workers.wait(30) == 0  # its nannies closed with the scheduler
        assert all(gone_or_zombie(pid) for pid in worker_pids)  # the nannies stopped them
        assert not sfile.exists()  # removed by the scheduler on its way out
    finally:
        stop(workers, sched)


def gone_or_zombie(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_the_nannies_and_their_workers(tmp_path, poll):
    sfile = tmp_path / "scheduler.json"
    sched = shoal_cli("scheduler", "--port", "0", "--scheduler-file", str(sfile), stderr=tmp_path / "s.log")
    workers = shoal_cli("worker", "--scheduler-file", str(sfile), "--nthreads", "1", stderr=tmp_path / "w.log")
    try:
        with Client(scheduler_file=str(sfile), timeout=30, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=60)
            (pid,) = c.run(os.getpid).values()
            assert pid != workers.pid  # a child of the nanny
            workers.send_signal(signal.SIGTERM)
            assert workers.wait(30) == 0
            poll(lambda: gone_or_zombie(pid), timeout=30)
            poll(lambda: not c.nthreads(), timeout=30)
    finally:
        stop(workers, sched)
    assert sched.returncode == 0


def test_secret_from_the_environment_and_a_worker_without_nanny(tmp_path, poll):
    secret = secrets.token_bytes(32)
    env = dict(os.environ, SHOAL_SECRET=secret.hex())
    sfile = tmp_path / "scheduler.json"
    sched = shoal_cli("scheduler", "--port", "0", "--scheduler-file", str(sfile), stderr=tmp_path / "s.log", env=env)
    worker = None
    try:
        with Client(scheduler_file=str(sfile), timeout=30, set_as_default=False) as c:
            address = c.scheduler_info()["address"]
            assert bytes.fromhex(json.loads(sfile.read_text())["shoal-secret"]) == secret
            worker = shoal_cli(
                "worker", address, "--no-nanny", "--nthreads", "2", "--name", "solo", "--resources", "GPU=2 MEM=1e9",
                stderr=tmp_path / "w.log", env=env,
            )  # fmt: skip
            c.wait_for_workers(1, timeout=60)
            (w,) = c.scheduler_info()["workers"].values()
            assert (w["name"], w["nthreads"], w["resources"], w["nanny"]) == ("solo", 2, {"GPU": 2, "MEM": 1e9}, None)
            assert w["pid"] == worker.pid  # the worker runs in the command's own process
            assert c.submit(sum, [1, 2, 3], resources={"GPU": 1}).result(timeout=30) == 6
            worker.send_signal(signal.SIGINT)
            assert worker.wait(30) == 0
            poll(lambda: not c.nthreads(), timeout=30)
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(30) == 0
        assert not sfile.exists()
    finally:
        stop(*(p for p in (worker, sched) if p is not None))


@pytest.mark.parametrize("command", [["scheduler", "--port", "0"], ["worker", "tcp://127.0.0.1:1"]])
def test_refuses_a_reachable_address_without_a_secret(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_SECRET"}
    proc = shoal_cli(*command, "--host", "0.0.0.0", stderr=tmp_path / "err.log", env=env)
    assert proc.wait(60) == 1
    err = (tmp_path / "err.log").read_text()
    assert "refusing to listen on '0.0.0.0' without a shared secret" in err
    assert "--insecure" in err and "Traceback" not in err


def test_insecure_scheduler_starts_and_stops_on_sigterm(tmp_path, poll):
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_SECRET"}
    sched = shoal_cli("scheduler", "--port", "0", "--host", "0.0.0.0", "--insecure", "--pid-file",
                      str(tmp_path / "pid"), stderr=tmp_path / "s.log", env=env)  # fmt: skip
    try:
        poll(lambda: "Scheduler at:" in (tmp_path / "s.log").read_text(), timeout=60)
        # the pid file is written just after the banner
        poll(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), timeout=10)
        assert int((tmp_path / "pid").read_text()) == sched.pid
        assert "Authentication: none" in (tmp_path / "s.log").read_text()
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(30) == 0
        assert not (tmp_path / "pid").exists()
    finally:
        stop(sched)


def test_tls_flags_are_refused_clearly(tmp_path):
    proc = shoal_cli("scheduler", "--tls-cert", "x.pem", stderr=tmp_path / "err.log")
    assert proc.wait(60) == 1
    assert "TLS is not supported yet" in (tmp_path / "err.log").read_text()


def test_scheduler_dashboard_address_and_no_dashboard(tmp_path, poll):
    import re
    import urllib.request

    sfile = tmp_path / "scheduler.json"
    sched = shoal_cli("scheduler", "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(sfile),
                      stderr=tmp_path / "s.log")  # fmt: skip
    quiet = shoal_cli("scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(tmp_path / "q.json"),
                      stderr=tmp_path / "q.log")  # fmt: skip
    try:
        poll(lambda: "Dashboard at:" in (tmp_path / "s.log").read_text(), timeout=60)
        link = re.search(r"Dashboard at:\s+(http://127\.0\.0\.1:\d+/status)", (tmp_path / "s.log").read_text())
        assert link, (tmp_path / "s.log").read_text()
        with urllib.request.urlopen(link.group(1).replace("/status", "/health"), timeout=10) as r:
            assert r.read() == b"ok"
        with Client(scheduler_file=str(sfile), timeout=30, set_as_default=False) as c:
            assert c.dashboard_link == link.group(1)
        poll(lambda: "Scheduler at:" in (tmp_path / "q.log").read_text(), timeout=60)
        assert "Dashboard" not in (tmp_path / "q.log").read_text()
        with Client(scheduler_file=str(tmp_path / "q.json"), timeout=30, set_as_default=False) as c:
            assert c.dashboard_link == "" and c.scheduler_info()["services"] == {}
    finally:
        stop(sched, quiet)
