"""A scheduler and workers in processes of their own, as on several machines."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from shoal import Client, Security

pytestmark = pytest.mark.system


def test_standalone_scheduler_and_workers_with_a_secret():
    secret = secrets.token_bytes(32)
    env = dict(os.environ, SHOAL_SECRET=secret.hex())
    sched = subprocess.Popen([sys.executable, "-m", "shoal.scheduler"], env=env, stdout=subprocess.PIPE, text=True)
    workers = []
    try:
        address = sched.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:")
        workers = [
            subprocess.Popen([sys.executable, "-m", "shoal.worker", address, "--nthreads", "1"], env=env)
            for _ in range(2)
        ]
        with Client(address, security=Security(secret), timeout=10) as c:
            c.wait_for_workers(2, timeout=30)
            # a lambda travels by value: the standalone workers cannot import this test module
            assert sum(c.gather(c.map(lambda x: x + 1, range(100)))) == sum(range(1, 101))
        with pytest.raises(OSError):
            Client(address, security=Security(b"not the secret"), timeout=2)
    finally:
        for p in [*workers, sched]:
            p.terminate()
        for p in [*workers, sched]:
            p.wait(10)
    assert sched.returncode == 0  # closed cleanly on SIGTERM
