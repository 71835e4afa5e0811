"""Diagnostics: the task stream, progress bars, task metadata, memory sampling
(`distributed.diagnostics`)."""

from shoal._names import lazy_exports
from shoal.diagnostics.memory_sampler import MemorySampler

__all__ = ["MemorySampler", "SchedulerPlugin"]

__getattr__, _ = lazy_exports(
    __name__,
    {"SchedulerPlugin": "shoal.diagnostics.plugin:SchedulerPlugin"},
    {"GraphLayout": "an internal of distributed's dashboard; shoal's dashboard draws the graph itself"},
)
