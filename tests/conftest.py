"""Shared fixtures for shoal's integration and system tests.

* ``transport`` is parametrized per module: integration modules run against an in-process
  cluster over the default in-process transport ("inproc") and over TCP ("tcp"); modules
  marked ``pytest.mark.system`` run against real worker processes ("processes").
* ``cluster`` is module-scoped (one cluster per module and transport) to keep the suite fast.
* ``client`` is function-scoped so every test starts with no futures and a fresh refcount.
* ``poll(cond, timeout=5)`` waits for a condition with a deadline; tests never sleep blindly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# Every scheduler and worker the tests start (in this process or as worker processes,
# which inherit the environment) checks all of its invariants after every stimulus.
os.environ["DASK_SHOAL__SCHEDULER__VALIDATE"] = "True"
os.environ["DASK_SHOAL__WORKER__VALIDATE"] = "True"
# schedulers keep their secret files (shoal.secret_files) in a directory of the test run's
# own, not in the user's runtime directory
if "DASK_SHOAL__SECURITY__RUNTIME_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _runtime_dir = tempfile.mkdtemp(prefix="shoal-test-runtime-")
    os.environ["DASK_SHOAL__SECURITY__RUNTIME_DIR"] = _runtime_dir
    atexit.register(shutil.rmtree, _runtime_dir, True)

import dask.config  # noqa: E402

dask.config.refresh()

import pytest  # noqa: E402

from shoal import Client, LocalCluster  # noqa: E402
from shoal.testing.poll import poll  # noqa: E402  the one poll helper (`from conftest import poll` too)

CLUSTER_KWARGS: dict[str, dict[str, Any]] = {
    "inproc": dict(n_workers=2, threads_per_worker=1, processes=False),
    "tcp": dict(n_workers=2, threads_per_worker=1, processes=False, scheduler_port=0, protocol="tcp://"),
    "processes": dict(n_workers=2, threads_per_worker=1, processes=True),
}


@pytest.fixture(autouse=True)
def _fresh_log_limits():
    """Repeated failures are logged once per interval per process (`shoal.log_limit`):
    each test starts with a fresh budget, so the first failure it causes is logged."""
    from shoal.log_limit import reset_all

    reset_all()
    yield




def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "transport" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("system") is not None:
            params = ["processes"]
        else:
            params = ["inproc", "tcp"]
        metafunc.parametrize("transport", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def cluster_kwargs(transport: str) -> dict[str, Any]:
    return dict(CLUSTER_KWARGS[transport])


@pytest.fixture(scope="module")
def cluster(cluster_kwargs: dict[str, Any]):
    with LocalCluster(**cluster_kwargs) as cl:
        yield cl


@pytest.fixture
def client(cluster: LocalCluster, transport: str):
    if transport == "tcp":
        # by address: `Client(cluster)` would reach its in-process scheduler in-process
        with Client(cluster.scheduler_address, security=cluster.security) as c:
            assert c.scheduler_comm.comm.peer_address.startswith("tcp://")
            yield c
    else:
        with Client(cluster) as c:
            yield c


@pytest.fixture
def tiny_disk(tmp_path):
    """A directory on a 2 MiB tmpfs (a disk that fills up for real), mounted for the test;
    skipped where mounting is not allowed (not root, or no tmpfs)."""
    import subprocess

    path = tmp_path / "tiny"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True, text=True
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(name="poll")
def poll_fixture() -> Callable[..., Any]:
    return poll
