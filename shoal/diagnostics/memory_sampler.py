"""`MemorySampler`: record the cluster's memory over time while blocks of code run
(`distributed.diagnostics.MemorySampler`'s API).

    ms = MemorySampler()
    with ms.sample("spill off"):
        x.sum().compute()
    ms.plot()                  # pandas + matplotlib: GiB over time, one line per label

The scheduler takes the samples (`shoal.scheduler.memory_sampler`): the sum over workers
of their process memory (`measure="process"`), managed memory in RAM (`"managed"`),
unmanaged memory (`"unmanaged"`), results spilled to disk (`"spilled"`) or all results
wherever they are (`"managed_total"`), as the workers last reported them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any


class MemorySampler:
    """Samples of cluster-wide memory, by label: ``samples[label] = [(time, bytes), ...]``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def sample(
        self, label: str | None = None, *, client: Any = None, measure: str = "process", interval: float = 0.5
    ) -> Any:
        """A context manager recording memory every `interval` seconds while its block
        runs (``async with`` on an asynchronous client), under `label` (default: a
        generated one)."""
        if client is None:
            from shoal.worker_client import get_client

            client = get_client()
        if client.asynchronous:
            return self._sample_async(label, client, measure, interval)
        return self._sample_sync(label, client, measure, interval)

    @contextmanager
    def _sample_sync(self, label: str | None, client: Any, measure: str, interval: float) -> Iterator[None]:
        key = client.sync(client.scheduler_comm.request, "memory_sampler_start", measure=measure, interval=interval)
        try:
            yield
        finally:
            samples = client.sync(client.scheduler_comm.request, "memory_sampler_stop", key=key)
            self.samples[label or key] = [tuple(s) for s in samples]

    @asynccontextmanager
    async def _sample_async(self, label: str | None, client: Any, measure: str, interval: float) -> AsyncIterator[None]:
        key = await client.scheduler_comm.request("memory_sampler_start", measure=measure, interval=interval)
        try:
            yield
        finally:
            samples = await client.scheduler_comm.request("memory_sampler_stop", key=key)
            self.samples[label or key] = [tuple(s) for s in samples]

    def to_pandas(self, *, align: bool = False) -> Any:
        """A DataFrame, one column of bytes per label, indexed by time (with `align`, by
        the time since each label's first sample, so runs can be compared side by
        side). Within a label's own time span, its last sample carries forward."""
        import pandas as pd

        columns = {}
        for label, samples in self.samples.items():
            times = pd.to_datetime([t for t, _ in samples], unit="s")
            if align:
                times = times - times[0]
            col = pd.Series([v for _, v in samples], index=times, name=label)
            columns[label] = col[~col.index.duplicated(keep="last")]
        df = pd.DataFrame(columns)
        for label, col in columns.items():
            inside = (df.index >= col.index.min()) & (df.index <= col.index.max())
            df[label] = df[label].ffill().where(inside)
        return df

    def plot(self, *, align: bool = False, **kwargs: Any) -> Any:
        """Plot the samples so far in GiB, as steps (`pandas.DataFrame.plot`, which needs
        matplotlib); `kwargs` go to it."""
        df = self.to_pandas(align=align) / 2**30
        kwargs.setdefault("drawstyle", "steps-post")
        return df.plot(xlabel="time", ylabel="Cluster memory (GiB)", **kwargs)


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'MemorySamplerExtension': 'every shoal Scheduler samples memory itself; use shoal.diagnostics.MemorySampler',
    },
)
