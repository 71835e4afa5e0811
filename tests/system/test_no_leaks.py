"""Closing a cluster and its client leaves no file descriptors, threads or processes."""

from __future__ import annotations

import gc
import threading

import pytest
from task_functions import inc

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system


def _snapshot() -> tuple[int, int, int]:
    import psutil

    p = psutil.Process()
    return p.num_fds(), threading.active_count(), len(p.children(recursive=True))


def test_cluster_lifecycles_leak_nothing(poll):
    # warm up what is shared on purpose: the loop thread and its default executor's threads
    # (the executor starts a thread per concurrent call, up to its bound: an in-process
    # cluster makes two at once where a process cluster makes one, so warm up both kinds)
    for processes in (True, False):
        with LocalCluster(n_workers=2, processes=processes) as cl, Client(cl) as c:
            c.submit(inc, 1).result()
    gc.collect()
    before = _snapshot()
    for processes in (True, False, True):
        with LocalCluster(n_workers=2, processes=processes) as cl, Client(cl) as c:
            assert sum(c.gather(c.map(inc, range(50)))) == sum(range(1, 51))
    gc.collect()
    try:
        poll(lambda: _snapshot() == before, timeout=10)
    except AssertionError:
        names = sorted(t.name for t in threading.enumerate())
        raise AssertionError(f"(fds, threads, children) {before} -> {_snapshot()}; threads: {names}") from None
