"""`Client.get_versions`, the version-mismatch warning, and refusal of another wire
protocol version at connection time."""

from __future__ import annotations

import asyncio
import os
import warnings

import pytest

import shoal.worker.server as worker_server
from shoal import Client, LocalCluster
from shoal.comm import ProtocolMismatchError
from shoal.protocol import handshake as hs
from shoal.protocol.framing import split_packet
from shoal.versions import format_mismatches, mismatches


def test_get_versions_shape(client):
    v = client.get_versions(packages=["numpy", "no-such-package-xyz"])
    assert set(v) == {"scheduler", "workers", "client"}
    assert set(v["workers"]) == set(client.nthreads())
    for report in [v["scheduler"], v["client"], *v["workers"].values()]:
        assert set(report) == {"host", "packages"}
        assert {"python", "python-bits", "OS", "OS-release", "machine", "byteorder"} <= set(report["host"])
        packages = report["packages"]
        for name in ("python", "shoal", "dask", "cloudpickle", "msgpack", "numpy"):
            assert packages[name], name
        assert packages["no-such-package-xyz"] is None
    assert client.get_versions(check=True)["client"]["packages"]["shoal"] == v["client"]["packages"]["shoal"]


def test_mismatches_table():
    same = {"python": "3.11.7", "shoal": "1", "dask": "2", "cloudpickle": "3", "msgpack": "4"}
    assert mismatches(same, {**same, "python": "3.11.2.final.0"}, {"w": same}) == {}  # micro versions agree
    found = mismatches(same, same, {"w1": {**same, "msgpack": "5"}, "w2": same})
    assert found == {"msgpack": {"client": "4", "scheduler": "4", "workers": {"4", "5"}}}
    table = format_mismatches(found)
    assert "Mismatched versions found" in table
    assert "| msgpack " in table and "4, 5" in table
    assert mismatches(same, same, {}, packages=["numpy"]) == {}  # unknown everywhere: no difference


def test_mismatched_worker_warns_and_check_raises(monkeypatch):
    real = worker_server.get_versions()
    monkeypatch.setattr(worker_server, "get_versions", lambda: {**real, "msgpack": "0.0.1-fake"})
    with LocalCluster(n_workers=1, processes=False) as cluster:
        with pytest.warns(UserWarning, match="Mismatched versions found") as record:
            client = Client(cluster)
        try:
            assert "0.0.1-fake" in str(record[0].message) and "msgpack" in str(record[0].message)
            with pytest.raises(ValueError, match="msgpack") as info:
                client.get_versions(check=True)
            assert "0.0.1-fake" in str(info.value)
            v = client.get_versions()  # without check: just the report
            [worker] = v["workers"].values()
            assert worker["packages"]["msgpack"] == "0.0.1-fake"
        finally:
            client.close()


def test_consistent_cluster_does_not_warn(cluster):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Client(cluster) as c:
            assert c.get_versions(check=True)
    assert not [w for w in caught if "Mismatched versions" in str(w.message)]


def test_client_refuses_scheduler_speaking_another_protocol():
    async def main():
        async def fake_scheduler(reader, writer):
            await reader.read(4096)  # the client's hello
            welcome = {"shoal": hs.PROTOCOL_VERSION + 1, "nonce": os.urandom(32), "info": {}, "auth": False}
            writer.write(b"".join(hs.encode_handshake(welcome)))
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(fake_scheduler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ProtocolMismatchError) as info:
                await Client(f"tcp://127.0.0.1:{port}", asynchronous=True, timeout=5)
        finally:
            server.close()
            await server.wait_closed()
        return str(info.value)

    msg = asyncio.run(asyncio.wait_for(main(), 30))
    assert "protocol version mismatch" in msg
    assert f"speaks {hs.PROTOCOL_VERSION + 1}" in msg and f"speaks {hs.PROTOCOL_VERSION}" in msg


def test_scheduler_refuses_client_speaking_another_protocol():
    with LocalCluster(n_workers=1, processes=False, protocol="tcp://", scheduler_port=0) as cluster:

        async def fake_client():
            host, port = cluster.scheduler_address.removeprefix("tcp://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            hello = {"shoal": hs.PROTOCOL_VERSION + 1, "nonce": os.urandom(32), "info": {}}
            writer.write(b"".join(hs.encode_handshake(hello)))
            try:
                return await asyncio.wait_for(reader.read(), 5)
            finally:
                writer.close()

        reply = asyncio.run(fake_client())
        msg = hs.decode_handshake(split_packet(reply))
        assert msg == {
            "error": f"protocol version mismatch: peer speaks {hs.PROTOCOL_VERSION + 1}, "
            f"this server speaks {hs.PROTOCOL_VERSION}"
        }
        with Client(cluster) as c:  # the scheduler keeps serving
            assert c.submit(sum, [1, 2]).result() == 3


def test_get_versions_of_more_packages_as_distributed():
    from shoal.versions import get_versions

    got = get_versions(packages=["psutil", "no-such-package-for-shoal"])
    assert got["psutil"] and got["no-such-package-for-shoal"] is None and got["dask"]
    got["dask"] = "changed"
    assert get_versions()["dask"] != "changed"  # each call its own dict
