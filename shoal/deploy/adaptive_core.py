"""`distributed.deploy.adaptive_core`'s names: shoal's `Adaptive` holds the whole policy
(`shoal.deploy.adaptive`, over the pure `shoal.scheduler.adaptive`)."""

from shoal._names import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {},
    {"AdaptiveCore": "subclass shoal.deploy.Adaptive (its target() and workers_to_close() decide)"},
)
