"""Small pure helpers shared by every layer: key prefixes, typenames, time parsing."""

from __future__ import annotations

import sys
from typing import Any

from dask.utils import key_split as _key_split
from dask.utils import parse_timedelta

_split = getattr(_key_split, "__wrapped__", _key_split)  # dask's uncached function

Key = Any  # str | int | float | tuple of those (dask.core.validate_key)


def key_prefix(key: Key) -> str:
    """The task prefix dask uses to group keys (`inc-abc123` -> `inc`). Interned: the
    million tasks of a graph share a handful of prefix strings, not one copy each. Not
    cached per key (dask's own cache would hold 100,000 keys, ~20 MB, to save ~0.3 µs)."""
    return sys.intern(_split(key))


def typename(obj_type: type) -> str:
    mod = getattr(obj_type, "__module__", "")
    name = getattr(obj_type, "__qualname__", getattr(obj_type, "__name__", str(obj_type)))
    return name if mod in ("builtins", "") else f"{mod}.{name}"


def parse_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    return float(parse_timedelta(timeout, default="s"))


def format_bytes(n: float) -> str:
    from dask.utils import format_bytes as fb

    return fb(int(n))


def overrides_hook(plugin: Any, hook: str) -> bool:
    """Whether `plugin` has a hook `hook` other than the no-op of a base class in
    `shoal.diagnostics.plugin` (so hosts skip calling no-ops on hot paths)."""
    for klass in type(plugin).__mro__:
        if hook in vars(klass):
            return klass.__module__ != "shoal.diagnostics.plugin"
    return hook in getattr(plugin, "__dict__", {})


class Log(str):
    """Log lines of one process: a `str` that shows as preformatted, escaped text in notebooks."""

    def _repr_html_(self) -> str:
        from html import escape

        return f'<pre style="white-space: pre-wrap; margin: 0">{escape(str(self))}</pre>'


class Logs(dict):
    """`{process name: Log}`: a `dict` that shows each process's log under its name in notebooks."""

    def _repr_html_(self) -> str:
        from html import escape

        parts = []
        for title, log in sorted(self.items(), key=lambda kv: str(kv[0])):
            body = log._repr_html_() if isinstance(log, Log) else f"<pre>{escape(str(log))}</pre>"
            parts.append(f"<details><summary>{escape(str(title))}</summary>{body}</details>")
        return "<div>" + "".join(parts) + "</div>"


def format_dashboard_link(host: str, port: int) -> str:
    """`shoal.dashboard.link` filled in (`{scheme}`, `{host}`, `{port}` and environment
    variables, as `distributed.utils.format_dashboard_link`)."""
    import os

    from shoal import config

    template = str(config.get("dashboard.link"))
    shown = f"[{host}]" if ":" in host else host
    return template.format(**{**os.environ, "scheme": "http", "host": shown, "port": port})
