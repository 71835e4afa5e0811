"""`Client.benchmark_hardware` (short durations and sizes: the shape, not the speed)."""

from __future__ import annotations

import pytest

from shoal import Client, LocalCluster, benchmarking


@pytest.fixture
def quick(monkeypatch):
    for kind in ("DISK", "MEMORY", "NETWORK"):
        monkeypatch.setattr(benchmarking, f"{kind}_DURATION", 0.02)
    monkeypatch.setattr(benchmarking, "DISK_SIZES", ("1 kiB", "100 kiB"))
    monkeypatch.setattr(benchmarking, "MEMORY_SIZES", ("2 kiB", "1 MiB"))
    monkeypatch.setattr(benchmarking, "NETWORK_SIZES", ("1 kiB", "1 MiB"))


def test_benchmark_hardware(client, quick):
    result = client.benchmark_hardware()
    assert set(result) == {"disk", "memory", "network"}
    assert list(result["disk"]) == ["1 kiB", "100 kiB"]
    assert list(result["memory"]) == ["2 kiB", "1 MiB"]
    assert list(result["network"]) == ["1 kiB", "1 MiB"]
    assert all(bw > 0 for by_size in result.values() for bw in by_size.values())


def test_benchmark_hardware_without_workers(quick):
    with LocalCluster(n_workers=0, processes=False) as cluster, Client(cluster) as c:
        assert c.benchmark_hardware() == {"disk": {}, "memory": {}, "network": {}}
