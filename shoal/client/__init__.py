"""The user-facing client: `Client`, `Future`, and the helpers over futures.

The names `distributed.client` offers are available here (imported on first use).
`client.py` is the `Client` facade; its methods come from one module per concern
(`submission`, `references`, `transfers`, `admin`, `sharing`, `plugins`, `topics`,
`introspection`, `reprs`); `outbox.py` orders what goes to the scheduler, `walk.py` is
the one container walker, `defaults.py` the default-client registry, `futures.py` the
`Future`, `helpers.py` `wait` / `as_completed` / `fire_and_forget`, `graphs.py` dask
graphs, `executor.py` the `concurrent.futures` executor.
"""

from shoal._names import lazy_exports

_ALT0 = (
    'use Client.get_executor() (a concurrent.futures executor)'
)
_ALT1 = (
    "an internal of distributed's client with no shoal counterpart"
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'AsCompleted': 'shoal.client.helpers:as_completed',
        'CancelledError': 'shoal.exceptions:CancelledError',
        'Client': 'shoal.client.client:Client',
        'ClosedClientError': 'shoal.exceptions:ClosedClientError',
        'Future': 'shoal.client.futures:Future',
        'FutureCancelledError': 'shoal.exceptions:FutureCancelledError',
        'FutureState': 'shoal.client.futures:FutureState',
        'FuturesCancelledError': 'shoal.exceptions:FuturesCancelledError',
        'VersionsDict': 'builtins:dict',
        'as_completed': 'shoal.client.helpers:as_completed',
        'default_client': 'shoal.client.client:default_client',
        'ensure_default_client': 'shoal.client.defaults:ensure_default_client',
        'fire_and_forget': 'shoal.client.helpers:fire_and_forget',
        'futures_of': 'shoal.client.helpers:futures_of',
        'get_task_metadata': 'shoal.diagnostics.task_metadata:get_task_metadata',
        'performance_report': 'shoal.diagnostics.performance_report:performance_report',
        'temp_default_client': 'shoal.client.defaults:temp_default_client',
        'wait': 'shoal.client.helpers:wait',
    },
    {
        **dict.fromkeys(
            ['CompatibleExecutor'],
            _ALT0,
        ),
        **dict.fromkeys(
            ['AllExit', 'CancelledFuturesGroup', 'SourceCode', 'done_callback', 'get_collections_metadata',
             'redict_collection'],
            _ALT1,
        ),
    },
)
