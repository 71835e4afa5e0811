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


def plural(n: int, word: str) -> str:
    """`1 thread`, `2 threads`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {
        'TimeoutError': 'builtins:TimeoutError',
        'sync': 'shoal._loop:sync',
        'import_term': 'shoal.utils_compat:import_term',
        'NoOpAwaitable': 'shoal.utils_compat:NoOpAwaitable',
        'Deadline': 'shoal.utils_compat:Deadline',
        'log_errors': 'shoal.utils_compat:log_errors',
        'get_ip': 'shoal.utils_compat:get_ip',
        'open_port': 'shoal.utils_compat:open_port',
        'format_dashboard_link': 'shoal.utils_compat:format_dashboard_link',
        'has_arg': 'shoal.utils_compat:has_arg',
        'iscoroutinefunction': 'shoal.utils_compat:iscoroutinefunction',
        'is_coroutine_function': 'shoal.utils_compat:iscoroutinefunction',
        'ensure_memoryview': 'shoal.utils_compat:ensure_memoryview',
        'nbytes': 'shoal.utils_compat:nbytes',
        'parse_ports': 'shoal.utils_compat:parse_ports',
        'All': 'shoal.utils_compat:All',
        'import_file': 'shoal.diagnostics.plugin:import_file',
        'key_split_group': 'shoal.utils_compat:key_split_group',
        'get_mp_context': 'shoal.utils_compat:get_mp_context',
        'truncate_exception': 'shoal.utils_compat:truncate_exception',
        'offload': 'shoal.utils_compat:offload',
    },
    {
        'LoopRunner': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'SyncMethodMixin': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'EmptyContext': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'DequeHandler': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'RateLimiterFilter': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'TupleComparable': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'asciitable': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'clean_dashboard_address': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'cli_keywords': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'get_fileno_limit': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'get_ip_interface': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'get_ipv6': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'get_traceback': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'in_async_call': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'is_valid_xml': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'json_load_robust': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'read_block': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'reset_logger_locks': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'run_in_executor_with_context': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'seek_delimiter': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'set_thread_state': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'silence_logging_cmgr': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
        'tmp_text': "an internal helper of distributed with no shoal counterpart; shoal's public helpers are in shoal.utils",
    },
)
