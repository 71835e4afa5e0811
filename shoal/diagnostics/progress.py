"""`distributed.diagnostics.progress`'s names. distributed computes progress with
scheduler plugins (`Progress`, `MultiProgress`, `AllProgress`); shoal's scheduler tracks
it itself (`shoal.scheduler.observers.ProgressWatch`) for `shoal.progress` and the
dashboard, so those classes are named stubs."""

from shoal._names import lazy_exports

_ALT = "shoal's scheduler tracks progress itself; use shoal.progress(...) or the dashboard's /status page"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"format_time": "shoal.diagnostics.progressbar:_format_time"},
    dict.fromkeys(["AllProgress", "GroupTiming", "MultiProgress", "Progress", "dependent_keys"], _ALT),
)
