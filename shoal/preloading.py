"""Preload scripts: code a scheduler, worker or nanny runs as it starts and closes
(distributed's `preload=` / `preload_argv=`, the `--preload` flag).

A preload is a module name (imported), the path of a `.py` file (run as a module of its
own), or the text of a script (anything with a space or a newline in it). If it defines
`dask_setup(server)` that is called once the server has started (awaited if it returns
an awaitable), `dask_teardown(server)` as it closes. A `dask_setup` that is a click
command gets its `preload_argv` parsed as distributed's does (click is then needed).
URLs are refused: shoal does not download code to run (fetch the file, pass its path).

`Preloads.from_options(preload, preload_argv)` checks everything (names import, files
exist, argv lengths match) at construction, so a typo fails before anything started.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["Preload", "Preloads", "is_webaddress"]

logger = logging.getLogger("shoal.preloading")


def is_webaddress(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _module_from_file(path: str) -> ModuleType:
    name = f"shoal_preload_{os.path.splitext(os.path.basename(path))[0]}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"preload {path!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load(name: str) -> ModuleType:
    if is_webaddress(name):
        raise NotImplementedError(
            f"preload {name!r}: shoal does not download code to run; fetch the file and pass its path"
        )
    if name.endswith(".py") and "\n" not in name:
        if not os.path.isfile(name):
            raise FileNotFoundError(f"preload {name!r}: no such file")
        return _module_from_file(os.path.abspath(name))
    if " " not in name and "\n" not in name:
        return sys.modules.get(name) or importlib.import_module(name)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:  # the text of a script
        f.write(name)
    try:
        return _module_from_file(f.name)
    finally:
        os.unlink(f.name)


class Preload:
    """One preload: its module, and the arguments for a click `dask_setup`."""

    def __init__(self, name: str, argv: Sequence[str] = ()):
        self.name = name
        self.argv = list(argv)
        self.module = _load(name)
        setup = getattr(self.module, "dask_setup", None)
        if self.argv and not _is_click_command(setup):
            raise ValueError(f"preload {name!r}: preload_argv given but its dask_setup is not a click command")

    async def start(self, server: Any) -> None:
        setup = getattr(self.module, "dask_setup", None)
        if setup is None:
            return
        if _is_click_command(setup):
            context = setup.make_context("dask_setup", list(self.argv), allow_extra_args=False)
            result = setup.callback(server, *context.args, **context.params)
        else:
            result = setup(server)
        if inspect.isawaitable(result):
            await result
        logger.info("ran dask_setup of preload %s", self.name)

    async def teardown(self, server: Any) -> None:
        teardown = getattr(self.module, "dask_teardown", None)
        if teardown is not None:
            result = teardown(server)
            if inspect.isawaitable(result):
                await result


def _is_click_command(obj: Any) -> bool:
    click = sys.modules.get("click")
    return click is not None and isinstance(obj, click.Command)


class Preloads:
    """The preloads of one server, run in order at start and in reverse at close."""

    def __init__(self, preloads: list[Preload]):
        self.preloads = preloads

    @classmethod
    def from_options(cls, preload: Any, preload_argv: Any = None) -> Preloads:
        """From distributed's `preload` (a name or a list) and `preload_argv` (one list of
        arguments for all, or one per preload)."""
        if not preload:
            return cls([])
        names = [preload] if isinstance(preload, str) else list(preload)
        argv = list(preload_argv or [])
        if argv and isinstance(argv[0], str):
            argvs = [argv] * len(names)
        elif not argv:
            argvs = [[] for _ in names]
        else:
            argvs = [list(a) for a in argv]
        if len(argvs) != len(names):
            raise ValueError(f"preload and preload_argv have mismatched lengths {len(names)} != {len(argvs)}")
        return cls([Preload(n, a) for n, a in zip(names, argvs)])

    async def start(self, server: Any) -> None:
        for p in self.preloads:
            await p.start(server)

    async def teardown(self, server: Any) -> None:
        for p in reversed(self.preloads):
            try:
                await p.teardown(server)
            except Exception:
                logger.exception("dask_teardown of preload %s failed", p.name)

    def __len__(self) -> int:
        return len(self.preloads)
