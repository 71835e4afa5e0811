"""A Dask distributed peer and shoal meet: each side is told, at once, what it reached
(`shoal/protocol/foreign.py`). distributed runs in its own process (it is a dev-only
dependency and configures logging on import)."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import textwrap

import msgpack
import pytest

from shoal import Client, LocalCluster
from shoal.comm.errors import ProtocolMismatchError
from shoal.protocol import foreign

try:
    import distributed  # noqa: F401

    HAVE_DISTRIBUTED = True
except ImportError:  # pragma: no cover - the bench/dev extra is not installed
    HAVE_DISTRIBUTED = False

needs_distributed = pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="distributed (the dev extra) is not installed")


def distributed_hello() -> bytes:
    """The bytes of a distributed handshake, laid out as distributed's TCP comm writes them."""
    body = msgpack.packb({"compression": None, "python": (3, 11, 0), "pickle-protocol": 5})
    prelude = struct.pack("<QQ", 1, len(body))
    return struct.pack("<Q", len(prelude) + len(body)) + prelude + body


def test_sniff_tells_distributed_from_shoal():
    hello = distributed_hello()
    assert foreign.sniff(hello) == foreign.DISTRIBUTED
    assert foreign.sniff(hello[:12]) == foreign.MORE
    assert foreign.sniff(b"GET / HTTP/1.1\r\n\r\n") is None
    assert foreign.sniff(struct.pack("<IQ", 1, 120) + b"x" * 120) is None  # a shoal packet


@needs_distributed
def test_the_refusal_is_a_typeerror_for_distributed():
    from distributed.protocol import loads

    data = foreign.distributed_refusal("you reached shoal")
    (size,) = struct.unpack_from("<Q", data)
    (n,) = struct.unpack_from("<Q", data, 8)
    lengths = struct.unpack_from(f"<{n}Q", data, 16)
    frames, pos = [], 16 + 8 * n
    for length in lengths:
        frames.append(data[pos : pos + length])
        pos += length
    assert size == len(data) - 8 and pos == len(data)
    with pytest.raises(TypeError, match="^you reached shoal$"):
        loads(frames)


@needs_distributed
def test_a_distributed_client_is_told_it_reached_shoal(caplog):
    with LocalCluster(n_workers=0, processes=False, scheduler_port=0, protocol="tcp://", dashboard_address=None) as cl:
        code = textwrap.dedent(
            f"""
            import distributed
            try:
                distributed.Client({cl.scheduler_address!r}, timeout=30)
            except Exception as e:
                print(type(e).__name__, e)
            """
        )
        with caplog.at_level(logging.WARNING, logger="shoal.comm"):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith(f"TypeError {cl.scheduler_address} is a shoal scheduler, not a Dask distributed one")
    assert "do not interoperate" in out.stdout
    lines = [r.getMessage() for r in caplog.records if "Dask distributed's protocol" in r.getMessage()]
    assert len(lines) == 1 and "do not interoperate" in lines[0]


@needs_distributed
def test_a_shoal_client_is_told_it_reached_distributed(tmp_path):
    sched_file = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(sched_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False"),
    )  # fmt: skip
    try:
        from conftest import poll

        poll(lambda: sched_file.exists() and sched_file.stat().st_size, timeout=30)
        import json

        address = json.loads(sched_file.read_text())["address"]
        with pytest.raises(ProtocolMismatchError, match="is a Dask distributed server") as info:
            Client(address, timeout=30)
        assert "do not interoperate" in str(info.value) and address in str(info.value)
    finally:
        proc.terminate()
        proc.wait(30)
