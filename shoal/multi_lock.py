"""`distributed.multi_lock`'s names: `MultiLock` (shoal.sync)."""

from shoal._names import lazy_exports

_ALT = (
    'every shoal Scheduler serves multi-locks itself (shoal.sync.server); nothing to register'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'MultiLock': 'shoal.sync:MultiLock',
    },
    {
        **dict.fromkeys(
            ['MultiLockExtension'],
            _ALT,
        ),
    },
)
