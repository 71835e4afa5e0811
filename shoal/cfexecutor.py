"""`distributed.cfexecutor`'s names: `ClientExecutor` (what `Client.get_executor()` returns)."""

from shoal._names import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'ClientExecutor': 'shoal.client.executor:ClientExecutor',
    },
    {},
)
