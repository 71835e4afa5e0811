"""`MemorySampler`: cluster memory recorded while blocks run, sync and async clients."""

from __future__ import annotations

import asyncio

import pytest

from memory_task_functions import block
from shoal import Client, LocalCluster, wait
from shoal.diagnostics import MemorySampler

MiB = 2**20


def test_samples_managed_memory_of_a_block(client):
    ms = MemorySampler()
    with ms.sample("build", measure="managed", interval=0.01):
        futs = client.map(block, range(8), nbytes=MiB)
        wait(futs)
    with ms.sample(measure="process", interval=0.01):
        pass
    samples = ms.samples["build"]
    assert len(samples) >= 2 and samples[-1][1] >= 8 * MiB and samples[0][0] <= samples[-1][0]
    assert len(ms.samples) == 2  # the unlabelled block got a generated label
    df = ms.to_pandas()
    assert list(df.columns)[0] == "build" and df["build"].max() >= 8 * MiB
    aligned = ms.to_pandas(align=True)
    assert aligned.index.min().total_seconds() == 0


def test_plot_draws_one_line_per_label(client):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ms = MemorySampler()
    for label in ("first", "second"):
        with ms.sample(label, measure="managed", interval=0.01):
            wait(client.map(block, range(4), nbytes=MiB, key=[f"{label}-{i}" for i in range(4)]))
    ax = ms.plot(align=True)
    assert ax.get_ylabel() == "Cluster memory (GiB)"
    assert [line.get_label() for line in ax.get_lines()] == ["first", "second"]


def test_bad_measure_and_interval_are_refused_at_the_call(client):
    with pytest.raises(ValueError, match="unknown measure 'rss'"):
        with MemorySampler().sample(measure="rss"):
            pass
    with pytest.raises(ValueError, match="interval must be a positive"):
        with MemorySampler().sample(interval=0):
            pass


def test_async_client_uses_async_with():
    async def main():
        async with LocalCluster(n_workers=1, processes=False, asynchronous=True) as cl:
            async with Client(cl, asynchronous=True) as c:
                ms = MemorySampler()
                async with ms.sample("a", client=c, measure="managed_total", interval=0.01):
                    f = c.submit(block, 0, MiB)
                    await f
                return ms.samples["a"]

    samples = asyncio.run(main())
    assert samples[-1][1] >= MiB
