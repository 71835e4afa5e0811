"""`distributed.lock`'s names: `Lock` (shoal.sync)."""

from shoal._names import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Lock': 'shoal.sync:Lock',
    },
    {},
)
