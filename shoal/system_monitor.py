"""A process's CPU, memory, open file descriptors and the host's network rate, sampled on
demand (psutil): what the dashboard's `/system` page draws for the scheduler and the
`/workers` page for each worker (in its heartbeat metrics).

`SystemMonitor().sample()` costs about 0.4 ms on a loaded 2-core VM (most of it reading
the host network counters); rates (CPU %, bytes per second)
are over the time since the previous sample. `history` keeps the last `n` samples.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import psutil

#: the figures of one sample, in order (the dashboard sends samples as lists)
FIELDS = ("time", "cpu", "memory", "num_fds", "read_bps", "write_bps")


class SystemMonitor:
    def __init__(self, n: int = 600, pid: int | None = None):
        self.process = psutil.Process(pid or os.getpid())
        self.process.cpu_percent(None)  # the first call starts the measurement
        self.history: collections.deque[list] = collections.deque(maxlen=n)
        self._net = self._net_counters()
        self._at = time.monotonic()

    @staticmethod
    def _net_counters() -> tuple[int, int]:
        try:
            c = psutil.net_io_counters()
        except (OSError, RuntimeError):  # no /proc/net/dev in some sandboxes
            return 0, 0
        return (c.bytes_recv, c.bytes_sent) if c is not None else (0, 0)

    def sample(self) -> list:
        """`[time, cpu %, RSS bytes, open fds, host bytes received/s, sent/s]`, also
        appended to `history`."""
        now = time.monotonic()
        elapsed = max(now - self._at, 1e-6)
        net = self._net_counters()
        read_bps = max(net[0] - self._net[0], 0) / elapsed
        write_bps = max(net[1] - self._net[1], 0) / elapsed
        self._net, self._at = net, now
        try:
            fds = self.process.num_fds()
        except (psutil.Error, AttributeError):  # AttributeError: not on this platform
            fds = 0
        try:
            cpu, rss = self.process.cpu_percent(None), self.process.memory_info().rss
        except psutil.Error:
            cpu, rss = 0.0, 0
        out = [time.time(), cpu, rss, fds, read_bps, write_bps]
        self.history.append(out)
        return out

    def as_metrics(self, sample: list | None = None) -> dict[str, Any]:
        """A sample as heartbeat metrics (`cpu`, `num_fds`, `host_net_io`), distributed's names."""
        s = sample if sample is not None else self.sample()
        return {"cpu": s[1], "num_fds": s[3], "host_net_io": {"read_bps": s[4], "write_bps": s[5]}}
