"""`distributed.event`'s names: `Event` (shoal.sync)."""

from shoal._names import lazy_exports

_ALT = (
    'every shoal Scheduler serves events itself (shoal.sync.server); nothing to register'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Event': 'shoal.sync:Event',
    },
    {
        **dict.fromkeys(
            ['EventExtension'],
            _ALT,
        ),
    },
)
