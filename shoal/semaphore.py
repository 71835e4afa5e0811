"""`distributed.semaphore`'s names: `Semaphore` (shoal.sync)."""

from shoal._names import lazy_exports

_ALT = (
    'every shoal Scheduler serves semaphores itself (shoal.sync.server); nothing to register'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Semaphore': 'shoal.sync:Semaphore',
    },
    {
        **dict.fromkeys(
            ['SemaphoreExtension'],
            _ALT,
        ),
    },
)
