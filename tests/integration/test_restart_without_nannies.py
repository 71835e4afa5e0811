"""`Client.restart` on a cluster whose workers have no nanny: they are shut down (nothing
can restart them) and every future is cancelled."""

from __future__ import annotations

import pytest

from shoal import CancelledError, Client, LocalCluster


def test_restart_shuts_down_workers_without_a_nanny(poll):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as c:
        f = c.submit(sum, [1, 2])
        assert f.result() == 3
        c.restart(timeout=10)
        with pytest.raises(CancelledError, match="Scheduler has restarted"):
            f.result()
        poll(lambda: not c.nthreads())
        # the scheduler has let them go; each finishes closing on its own
        poll(lambda: all(w.status == "closed" for w in cluster.workers.values()))


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
