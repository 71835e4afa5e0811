"""`distributed.metrics`'s names; shoal has no fine-grained metering (Spans, ContextMeter) yet."""

from shoal._names import lazy_exports

_ALT = (
    'shoal has no fine-grained metering yet; use Client.get_task_stream(), Client.profile() or '
    'performance_report'
)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {},
    {
        **dict.fromkeys(
            ['ContextMeter', 'DelayedMetricsLedger', 'MeterOutput', 'meter'],
            _ALT,
        ),
    },
)
