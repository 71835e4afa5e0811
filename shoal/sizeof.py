"""`distributed.sizeof`'s names: `safe_sizeof` (dask.sizeof that never raises)."""

from shoal._names import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'safe_sizeof': 'shoal.worker.sizeof:safe_sizeof',
    },
    {},
)
