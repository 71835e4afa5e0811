"""`distributed.nanny`'s names: `Nanny` (shoal.worker.nanny)."""

from shoal._names import lazy_exports

_ALT = (
    "an internal of distributed's Nanny; shoal's Nanny runs `python -m shoal.worker` itself (and "
    'shoal.deploy.local.WorkerProcess is a worker process without a nanny)'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Nanny': 'shoal.worker.nanny:Nanny',
    },
    {
        **dict.fromkeys(
            ['WorkerProcess'],
            _ALT,
        ),
    },
)
