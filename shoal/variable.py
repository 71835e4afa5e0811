"""`distributed.variable`'s names: `Variable` (shoal.sync)."""

from shoal._names import lazy_exports

_ALT = (
    'every shoal Scheduler serves variables itself (shoal.sync.server); nothing to register'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Variable': 'shoal.sync:Variable',
    },
    {
        **dict.fromkeys(
            ['VariableExtension'],
            _ALT,
        ),
    },
)
