"""Diagnostics: the task stream, progress bars, task metadata, memory sampling
(`distributed.diagnostics`)."""

from shoal.diagnostics.memory_sampler import MemorySampler

__all__ = ["MemorySampler"]
