"""`Client.restart` on a cluster whose workers have no nanny: they are shut down (nothing
can restart them), every future is cancelled, and, as in distributed, the restart waits
for as many workers as before to come back (a deployment system may start new ones),
then raises `TimeoutError` saying why they never will. It used to return at once and
leave a cluster without workers behind without a word."""

from __future__ import annotations

import pytest

from shoal import CancelledError, Client, LocalCluster


def test_restart_shuts_down_workers_without_a_nanny_and_says_why(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            f = c.submit(sum, [1, 2])
            assert f.result() == 3
            with pytest.raises(TimeoutError, match=r"Waited for 2 worker\(s\) to reconnect.*after 0.5s, 2 have not "
                               r"returned.*The 2 worker\(s\) not using Nannies were just shut down"):  # fmt: skip
                c.restart(timeout=0.5)
            with pytest.raises(CancelledError, match="Scheduler has restarted"):
                f.result()
            poll(lambda: not c.nthreads())
            # the scheduler has let them go; each finishes closing on its own
            poll(lambda: all(w.status == "closed" for w in cluster.workers.values()))


def test_restart_waits_for_workers_a_deployment_starts_again(poll):
    import threading

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            (name,) = cluster.workers

            def relaunch():  # what a deployment system does once a worker has exited
                poll(lambda: not cluster.scheduler.state.workers, timeout=30)
                cluster.workers.pop(name, None)
                cluster.worker_spec.pop(name, None)
                cluster.scale(1)

            deployment = threading.Thread(target=relaunch)
            deployment.start()
            try:
                c.restart(timeout=30)  # returns once a worker is back
            finally:
                deployment.join()
            assert len(c.nthreads()) == 1 and c.submit(sum, [2, 2]).result() == 4


def test_restart_and_shutdown_from_an_asynchronous_client():
    import asyncio

    async def main() -> None:
        async with Client(n_workers=1, processes=False, asynchronous=True) as c:
            f = c.submit(sum, [1, 2])
            assert await f == 3
            await c.restart(timeout=10, wait_for_workers=False)
            assert f.cancelled() and c.generation == 1
            cluster = c.cluster
            await c.shutdown()
            assert c.status == "closed" and cluster.status == "closed"

    asyncio.run(main())
