"""`distributed.publish`'s names: `Datasets` (a client's published datasets)."""

from shoal._names import lazy_exports

_ALT = (
    "the scheduler side of published datasets is shoal's own; use Client.publish_dataset / "
    'get_dataset / datasets'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        'Datasets': 'shoal.datasets:Datasets',
    },
    {
        **dict.fromkeys(
            ['PublishExtension', 'PublishedDataset'],
            _ALT,
        ),
    },
)
