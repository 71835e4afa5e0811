"""Reaching your own cluster by address alone (secret files), and refusals that say how
to pass a secret: the same process, another process of the same user, another user."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import pytest

from shoal import Client, LocalCluster, Security, secret_files
from shoal.comm.errors import AuthenticationError
from tests.task_functions import inc

pytestmark = pytest.mark.system

CONNECT = """
import sys
from shoal import Client
with Client(sys.argv[1], timeout=10, set_as_default=False) as c:
    print("RESULT", c.submit(sum, [1, 2, 3]).result(), len(c.nthreads()))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_SECRET", "DASK_SHOAL__SECURITY__SECRET")}
    env.update(extra)
    return env


def _other_process(address: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CONNECT, address], env=env, capture_output=True, text=True, timeout=60, **kwargs
    )


@pytest.fixture(scope="module")
def proc_cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        yield cl


def test_secret_file_is_private_and_keyed_by_address(proc_cluster):
    path = secret_files.secret_file_path(proc_cluster.scheduler_address)
    assert os.path.dirname(path) == secret_files.runtime_dir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path) as f:
        info = json.load(f)
    assert bytes.fromhex(info["secret"]) == proc_cluster.security.secret
    assert info["pid"] == os.getpid()
    port = proc_cluster.scheduler_address.rsplit(":", 1)[1]
    # the same scheduler by another spelling of its address
    assert secret_files.lookup(f"localhost:{port}") == proc_cluster.security.secret


def test_same_process_by_address(proc_cluster):
    with Client(proc_cluster.scheduler_address, set_as_default=False) as c:
        assert c.submit(inc, 1).result() == 2

    async def run():
        async with Client(proc_cluster.scheduler_address, asynchronous=True, set_as_default=False) as c:
            return await c.submit(inc, 2)

    assert asyncio.run(run()) == 3


def test_second_notebook_of_the_same_user(proc_cluster):
    """Notebook B: another process, the same user, only the address."""
    port = proc_cluster.scheduler_address.rsplit(":", 1)[1]
    done = _other_process(f"tcp://127.0.0.1:{port}", _env())
    assert done.returncode == 0, done.stderr
    assert "RESULT 6 1" in done.stdout


def test_process_without_the_secret_file_is_refused_with_how_to(proc_cluster, tmp_path):
    empty = tmp_path / "elsewhere"
    done = _other_process(proc_cluster.scheduler_address, _env(DASK_SHOAL__SECURITY__RUNTIME_DIR=str(empty)))
    assert done.returncode != 0
    assert "AuthenticationError" in done.stderr
    assert "requires authentication" in done.stderr
    for hint in ("security=Security('<hex>')", "SHOAL_SECRET=<hex>", "shoal.security.secret", str(empty)):
        assert hint in done.stderr, hint


@pytest.mark.parametrize("var", ["SHOAL_SECRET", "DASK_SHOAL__SECURITY__SECRET"])
def test_secret_from_the_environment_is_hex(proc_cluster, tmp_path, var):
    env = _env(DASK_SHOAL__SECURITY__RUNTIME_DIR=str(tmp_path / "none"))
    env[var] = proc_cluster.security.secret.hex()
    done = _other_process(proc_cluster.scheduler_address, env)
    assert done.returncode == 0, done.stderr
    assert "RESULT 6 1" in done.stdout


def test_wrong_secret_says_where_it_came_from(proc_cluster, monkeypatch):
    with pytest.raises(AuthenticationError, match="rejected") as info:
        Client(proc_cluster.scheduler_address, security=Security("00ff"), timeout=5, set_as_default=False)
    assert "came from the security= argument" in str(info.value)
    monkeypatch.setenv("SHOAL_SECRET", "abcd")
    with pytest.raises(AuthenticationError) as info:
        Client(proc_cluster.scheduler_address, security=False, timeout=5, set_as_default=False)
    assert "no secret" in str(info.value) or "requires authentication" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a file away")
def test_a_file_another_user_owns_is_ignored(tmp_path, caplog):
    """Another user cannot read our 0700 directory (the OS sees to that); and a file planted
    by another user in a directory we read is not trusted."""
    import pwd

    import dask.config

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    with dask.config.set({"shoal.security.runtime-dir": str(tmp_path / "rt")}):
        address = "tcp://127.0.0.1:2"
        path = secret_files.remember(address, b"planted")
        secret_files._in_process.clear()
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        with caplog.at_level("WARNING", logger="shoal.security"):
            assert secret_files.lookup(address) is None
        assert "not private to this user" in caplog.text


def test_one_encoding():
    assert secret_files.parse_secret("0aff") == b"\x0a\xff"
    assert secret_files.parse_secret(b"0aff") == b"0aff"  # bytes are the secret itself
    assert secret_files.parse_secret(1234) == bytes.fromhex("1234")  # dask config turned it into a number
    assert secret_files.parse_secret("") is None
    assert Security("0aff").secret == b"\x0a\xff"
    assert Security(secret_files.parse_secret("0aff")).secret_hex == "0aff"
    with pytest.raises(ValueError, match="hexadecimal"):
        Security("not hex at all")


def test_unsafe_or_stale_files_are_ignored(tmp_path):
    import dask.config

    with dask.config.set({"shoal.security.runtime-dir": str(tmp_path / "rt")}):
        address = "tcp://127.0.0.1:1"
        path = secret_files.remember(address, b"s3cret")
        assert path is not None
        secret_files._in_process.clear()  # as another process sees it
        assert secret_files.lookup(address) == b"s3cret"
        os.chmod(path, 0o644)
        assert secret_files.lookup(address) is None  # others could read it
        os.chmod(path, 0o600)
        with open(path) as f:
            info = json.load(f)
        info["pid"] = 2**22 + 12345  # a process that does not exist
        with open(path, "w") as f:
            json.dump(info, f)
        assert secret_files.lookup(address) is None
        assert not os.path.exists(path)  # a dead scheduler's file is removed
        secret_files.remember(address, b"s3cret")
        secret_files.forget(address, b"s3cret")
        assert not os.path.exists(path)


def test_a_worker_joins_by_address(proc_cluster):
    from shoal.worker.server import Worker

    async def run():
        worker = await Worker(proc_cluster.scheduler_address, nthreads=1, name="by-address")
        try:
            async with Client(proc_cluster.scheduler_address, asynchronous=True, set_as_default=False) as c:
                await c.wait_for_workers(2)
                return await c.submit(inc, 41, workers=[worker.address])
        finally:
            await worker.close()

    assert asyncio.run(run()) == 42
