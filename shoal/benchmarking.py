"""Hardware benchmarks behind `Client.benchmark_hardware`: disk, memory and network
bandwidth (bytes per second) by transfer size, each measured for a fixed duration.

Workers run `benchmark_disk` (appending to files in their local directory, fsync'ed)
and `benchmark_memory` (copying buffers) in a thread, and `benchmark_network` against a
peer worker (echo round trips, counting the bytes both ways). The scheduler averages
over the workers: `{"disk": {"1 kiB": bw, ...}, "memory": {...}, "network": {...}}`.
Sizes and durations are the module constants below (as in distributed).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from typing import Any

from dask.utils import parse_bytes

DISK_SIZES = ("1 kiB", "100 kiB", "1 MiB", "10 MiB", "100 MiB")
DISK_DURATION = 1.0
MEMORY_SIZES = ("2 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB")
MEMORY_DURATION = 0.2
NETWORK_SIZES = ("1 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB", "50 MiB")
NETWORK_DURATION = 1.0


def benchmark_disk(rootdir: str | None = None, sizes: Any = None, duration: float | None = None) -> dict[str, float]:
    duration = DISK_DURATION if duration is None else duration
    out = {}
    for size_str in sizes or DISK_SIZES:
        size = parse_bytes(size_str)
        data = random.randbytes(size)
        names = [str(i) for i in range(100)]
        directory = tempfile.mkdtemp(prefix="shoal-disk-benchmark-", dir=rootdir)
        try:
            start = time.perf_counter()
            total = 0
            while time.perf_counter() < start + duration:
                with open(os.path.join(directory, random.choice(names)), "ab") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                total += size
            out[size_str] = total / (time.perf_counter() - start)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return out


def benchmark_memory(sizes: Any = None, duration: float | None = None) -> dict[str, float]:
    duration = MEMORY_DURATION if duration is None else duration
    out = {}
    for size_str in sizes or MEMORY_SIZES:
        size = parse_bytes(size_str)
        data = random.randbytes(size)
        start = time.perf_counter()
        total = 0
        while time.perf_counter() < start + duration:
            copy = data[:-1]
            del copy
            total += size
        out[size_str] = total / (time.perf_counter() - start)
    return out


async def benchmark_network(peer: Any, sizes: Any = None, duration: float | None = None) -> dict[str, float]:
    """Echo round trips with `peer` (an rpc `Peer` serving `echo`)."""
    duration = NETWORK_DURATION if duration is None else duration
    out = {}
    for size_str in sizes or NETWORK_SIZES:
        size = parse_bytes(size_str)
        data = random.randbytes(size)
        start = time.perf_counter()
        total = 0
        while time.perf_counter() < start + duration:
            await peer.request("echo", data=data)
            total += 2 * size
        out[size_str] = total / (time.perf_counter() - start)
    return out
