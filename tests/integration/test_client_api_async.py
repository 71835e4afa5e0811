"""The Client management and introspection API on an asynchronous client: every
method returns an awaitable."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shoal import Client, LocalCluster, benchmarking, wait
from shoal.cluster_dump import load_cluster_dump


def payload(i):
    return bytes([i]) * 1000


def mark(dask_worker):
    dask_worker.async_marker = True


def has_marker(dask_worker):
    return getattr(dask_worker, "async_marker", False)


def log_in_task(text):
    logging.getLogger("shoal.test.async").warning(text)


@pytest.mark.parametrize("protocol", ["inproc://", "tcp://"])
def test_async_client_api(protocol, tmp_path, monkeypatch):
    for kind in ("DISK", "MEMORY", "NETWORK"):
        monkeypatch.setattr(benchmarking, f"{kind}_DURATION", 0.01)
        monkeypatch.setattr(benchmarking, f"{kind}_SIZES", ("1 kiB",))
    records: list = []

    class Collect(logging.Handler):
        def emit(self, record):
            if hasattr(record, "worker"):
                records.append(record)

    async def main():
        async with (
            LocalCluster(n_workers=2, processes=False, asynchronous=True, protocol=protocol) as cluster,
            Client(cluster, asynchronous=True) as c,
        ):
            a, b = sorted(await c.nthreads())
            futures = c.map(payload, range(6), workers=[a], pure=False)
            await wait(futures)
            await c.replicate(futures[:2])
            who = await c.who_has(futures[:2])
            assert all(sorted(h) == [a, b] for h in who.values())
            await c.replicate(futures[:2], n=1)
            await c.rebalance(futures)
            has = await c.has_what()
            assert len(has[a]) == len(has[b]) == 3
            assert await c.gather(futures) == [payload(i) for i in range(6)]
            assert (await c.nbytes())["payload"] == 6 * len(payload(0))
            assert await c.call_stack() == {}
            assert set(await c.processing()) == {a, b}

            await c.set_metadata(["a", "b"], 1)
            assert await c.get_metadata("a") == {"b": 1}
            assert await c.get_metadata("zz", default=None) is None
            with pytest.raises(KeyError):
                await c.get_metadata("zz")

            versions = await c.get_versions(check=True)
            assert set(versions["workers"]) == {a, b}

            story = await c.story(futures[0])
            assert any(e[0] == "scheduler" and e[3] == "memory" for e in story)

            await c.dump_cluster_state(str(tmp_path / "async-dump"))
            state = load_cluster_dump(str(tmp_path / "async-dump.msgpack.gz"))
            assert sorted(state["workers"]) == [a, b]

            assert await c.register_worker_callbacks(mark) == {a: {"status": "OK"}, b: {"status": "OK"}}
            assert await c.run(has_marker) == {a: True, b: True}

            await c.forward_logging("shoal.test.async")
            await c.submit(log_in_task, "async hello", pure=False)
            for _ in range(500):
                if any(r.getMessage() == "async hello" for r in records):
                    break
                await asyncio.sleep(0.01)  # poll for the forwarded record
            assert next(r.worker for r in records if r.getMessage() == "async hello") in (a, b)
            await c.unforward_logging("shoal.test.async")

            bench = await c.benchmark_hardware()
            assert set(bench["network"]) == {"1 kiB"}

            ex = c.get_executor()
            assert await asyncio.wrap_future(ex.submit(payload, 3)) == payload(3)

    handler = Collect()
    logging.getLogger("shoal.test.async").addHandler(handler)
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        logging.getLogger("shoal.test.async").removeHandler(handler)
