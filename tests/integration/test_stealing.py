"""Work stealing end to end: a task waiting behind a long one moves to an idle worker."""

from __future__ import annotations

import threading

from conftest import poll

from shoal import Client, LocalCluster

release = threading.Event()


def block(x):
    release.wait(30)
    return x


def quick(x):
    return x + 1


def test_task_stuck_behind_a_long_one_is_stolen_by_the_idle_worker():
    release.clear()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as c:
        try:
            slow = c.submit(block, 0, pure=False)
            poll(lambda: any(c.processing().values()))
            slow_worker = next(w for w, keys in c.processing().items() if slow.key in keys)
            # fast tasks: some are sent to the slow worker's queue behind `slow`
            fast = [c.submit(quick, i, pure=False) for i in range(6)]
            # all of them finish while `slow` is still blocked: the ones queued behind it
            # were taken back and run by the other worker
            assert c.gather(fast) == [1, 2, 3, 4, 5, 6]
            assert not slow.done()
            where = c.who_has(fast)
            assert all(slow_worker not in holders for holders in where.values())
        finally:
            release.set()
        assert slow.result() == 0
