"""`distributed.queues`'s names: `Queue` (shoal.sync)."""

from shoal._names import lazy_exports

_ALT = (
    'every shoal Scheduler serves queues itself (shoal.sync.server); nothing to register'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Queue': 'shoal.sync:Queue',
    },
    {
        **dict.fromkeys(
            ['QueueExtension'],
            _ALT,
        ),
    },
)
