"""Real worker processes (``LocalCluster(processes=True)``), one shared cluster per module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
from task_functions import add, inc

from shoal import Client, LocalCluster, Security

pytestmark = pytest.mark.system


def test_shared_cluster_basics(client):
    assert len(client.nthreads()) == 2
    assert client.gather(client.map(inc, range(10))) == list(range(1, 11))
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2
    assert os.getpid() not in pids.values()


def test_client_without_arguments():
    with Client() as c:
        cl = c.cluster
        assert cl is not None
        assert cl.status == "running"
        assert c.submit(inc, 1).result() == 2
        assert c.run(os.getpid) and os.getpid() not in c.run(os.getpid).values()
    assert c.status == "closed"
    assert cl.status == "closed"


def test_function_from_user_module_on_sys_path(tmp_path, monkeypatch):
    modname = f"shoal_usermod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{modname}.py").write_text(
        textwrap.dedent(
            """
            import os

            def triple(x):
                return 3 * x

            def where():
                return os.getpid()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(modname)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cl, Client(cl) as c:
            assert c.submit(mod.triple, 14).result() == 42
            assert c.submit(mod.where).result() != os.getpid()
    finally:
        sys.modules.pop(modname, None)


def test_functions_in_main_script(tmp_path):
    (tmp_path / "helper_mod.py").write_text("def triple(x):\n    return 3 * x\n")
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from shoal import Client, LocalCluster
            import helper_mod

            def square(x):
                return x * x

            class Box:
                def __init__(self, v):
                    self.v = v

            def unbox(b):
                return b.v

            if __name__ == "__main__":
                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cl, Client(cl) as c:
                    print("square", c.submit(square, 7).result())
                    print("helper", c.submit(helper_mod.triple, 5).result())
                    print("lambda", c.submit(lambda x: x + 1, 1).result())
                    print("map", sum(c.gather(c.map(square, range(4)))))
                    print("class", c.submit(unbox, Box(9)).result())
                    print("remote", c.submit(os.getpid).result() != os.getpid())
            """
        )
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=elsewhere, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    for expected in ["square 49", "helper 15", "lambda 2", "map 14", "class 9", "remote True"]:
        assert expected in lines, (proc.stdout, proc.stderr)


def test_large_array_between_workers(client):
    w0, w1 = sorted(client.nthreads())
    n = 50_000_000 // 8  # 50 MB of float64
    x = client.submit(np.arange, n, dtype="float64", workers=[w0])
    s = client.submit(np.sum, x, workers=[w1])
    assert s.result(timeout=30) == n * (n - 1) / 2
    assert list(client.who_has([s])[s.key]) == [w1]
    assert w0 in client.who_has([x])[x.key]
    assert client.submit(lambda a: a.nbytes, x, workers=[w1]).result() == n * 8


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_garbage_on_scheduler_port(cluster, client):
    before = client.submit(inc, 1, pure=False)
    host, port = _host_port(cluster.scheduler_address)
    payloads = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        os.urandom(4096),
        b"\xff" * 64,  # absurd length prefixes
        b"\x00" * 16,
    ]
    for payload in payloads:
        with socket.create_connection((host, port), timeout=5) as s:
            try:
                s.sendall(payload)
                s.settimeout(2)
                s.recv(1024)  # the scheduler may answer or drop us; either is fine
            except OSError:
                pass
    # a connection that sends nothing and just goes away
    socket.create_connection((host, port), timeout=5).close()
    assert before.result() == 2
    assert client.submit(add, 1, 2, pure=False).result() == 3
    with Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as c2:
        assert c2.submit(inc, 10, pure=False).result() == 11
        assert len(c2.nthreads()) == 2


def test_wrong_secret_rejected(cluster, client):
    with pytest.raises(OSError):
        Client(cluster.scheduler_address, security=Security(b"wrong"), timeout=2, set_as_default=False)
    with pytest.raises(OSError):  # no secret at all
        Client(cluster.scheduler_address, security=False, timeout=2, set_as_default=False)
    assert client.submit(inc, 5, pure=False).result() == 6
    with Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as c2:
        assert c2.submit(inc, 6, pure=False).result() == 7


def test_connect_to_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(OSError) as info:
        Client(address, timeout=0.5, set_as_default=False)
    msg = str(info.value)
    assert "connect" in msg.lower()
    assert f"127.0.0.1:{port}" in msg
