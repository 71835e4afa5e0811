"""distributed's names at distributed's import paths: lazy re-exports and named stubs.

The modules that mirror `distributed`'s layout (`shoal.core`, `shoal.lock`,
`shoal.client`, `shoal.scheduler`, ...) are thin: each maps a name to where shoal keeps
it (imported on first use, so `import shoal.scheduler.state` stays light and no layer
imports a higher one at import time), and maps the names shoal cannot honour to a stub
that raises `NotImplementedError` naming the alternative. `scripts/api_walk.py` counts
the stubs (`__shoal_unsupported__`) as not done.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["unsupported", "lazy_exports"]


def unsupported(qualname: str, alternative: str, module: str = "shoal") -> Any:
    """A class standing for `qualname`: instantiating or calling it raises
    `NotImplementedError` saying what to use instead."""
    message = f"{qualname} is not available in shoal: {alternative}"

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(message)

    name = qualname.rsplit(".", 1)[-1]
    stub = type(name, (), {"__new__": staticmethod(lambda cls, *a, **k: fail()), "__doc__": message,
                           "__shoal_unsupported__": alternative, "__module__": module})  # fmt: skip
    return stub


def lazy_exports(
    module: str, names: dict[str, str], stubs: dict[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__, __dir__ = lazy_exports(__name__, {"Client": "shoal.client.client:Client"},
    {"TaskGroup": "use ..."})` for a module of distributed's layout."""
    stubs = stubs or {}
    cache: dict[str, Any] = {}

    def __getattr__(name: str) -> Any:
        if name in cache:
            return cache[name]
        if name in names:
            where, _, attr = names[name].partition(":")
            target = importlib.import_module(where)
            value = target if names[name].endswith(":") else getattr(target, attr or name)
        elif name in stubs:
            value = unsupported(f"{module.replace('shoal', 'distributed', 1)}.{name}", stubs[name], module)
        else:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        cache[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(stubs))

    return __getattr__, __dir__
