"""Plugin base classes (`SchedulerPlugin`, `WorkerPlugin`, `NannyPlugin`), the
`UploadFile` / `SchedulerUploadFile` plugins behind `Client.upload_file`, and `Environ`
(environment variables for worker processes).

A plugin is an object whose hooks the scheduler, each worker or each nanny calls at
points of its life; every hook may be a plain method or a coroutine function. The base
classes only define the hooks as no-ops: subclass them and override what you need
(`Client.register_plugin` refuses objects that are not instances of one of them).

Where the hooks are called:

- scheduler plugins: `shoal/scheduler/plugins.py` (`PluginHost`);
- worker plugins: kept by the scheduler as worker setups (`shoal/scheduler/admin.py`), so
  every current worker and every worker that joins later runs `add_worker_plugin` before
  it gets any task; the worker (`Worker.plugin_add` / `plugin_remove`) calls `setup` /
  `teardown` and feeds `transition` from its state machine's story;
- nanny plugins: kept by the scheduler and handed to every nanny when it registers
  (`Nanny.plugin_add`), before it starts its worker process.

A hook that raises is logged and breaks nothing, except `setup` / `teardown` during
registration / unregistration, whose errors are re-raised to the client.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import shutil
import sys
import tempfile
import uuid
from importlib.util import cache_from_source
from types import ModuleType
from typing import Any

from dask.utils import funcname

logger = logging.getLogger("shoal.plugins")

#: file types `upload_file` can import (a `.py` module; archives go on `sys.path`)
IMPORTABLE = (".py", ".zip", ".egg", ".pyz")


class SchedulerPlugin:
    """Hooks run in the scheduler. `name` (optional) names the plugin; with `idempotent`
    a second registration under the same name is ignored."""

    idempotent: bool = False

    async def start(self, scheduler: Any) -> None:
        """Run when the plugin is registered on a running scheduler."""

    async def before_close(self) -> None:
        """Run first when the scheduler closes."""

    async def close(self) -> None:
        """Run when the scheduler closes (or the plugin is unregistered)."""

    def update_graph(
        self,
        scheduler: Any,
        *,
        client: str,
        keys: set,
        tasks: list,
        annotations: dict,
        priority: dict,
        stimulus_id: str,
        **kwargs: Any,
    ) -> None:
        """Run after a client submitted tasks: `keys` it wants, `tasks` all keys sent."""

    def restart(self, scheduler: Any) -> None:
        """Run when the scheduler restarts its workers and forgets all tasks."""

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any) -> None:
        """Run after every task state change on the scheduler (keep it cheap)."""

    def add_worker(self, scheduler: Any, worker: str) -> None:
        """Run when a worker joins (after its worker setups ran)."""

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str, **kwargs: Any) -> None:
        """Run when a worker leaves."""

    def add_client(self, scheduler: Any, client: str) -> None:
        """Run when a client connects."""

    def remove_client(self, scheduler: Any, client: str) -> None:
        """Run when a client disconnects."""

    def log_event(self, topic: str, msg: Any) -> None:
        """Run for every event logged on the scheduler (`Client.log_event`, ...)."""


class WorkerPlugin:
    """Hooks run in every worker, current and future. `name` (optional) names the
    plugin; with `idempotent` a second registration under the same name is ignored."""

    idempotent: bool = False

    def setup(self, worker: Any) -> None:
        """Run when the plugin is added to a worker (before a joining worker gets tasks)."""

    def teardown(self, worker: Any) -> None:
        """Run when the plugin is removed or the worker closes."""

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Run after every task state change on the worker (as its story logs them,
        with `stimulus_id=`; keep it cheap: it runs on the worker's event loop)."""


class NannyPlugin:
    """Hooks run in every nanny, current and future, before it starts a worker process.
    With `restart`, registering the plugin restarts the nannies' running workers (so
    e.g. environment variables set in `setup` reach them)."""

    idempotent: bool = False
    restart: bool = False

    def setup(self, nanny: Any) -> None:
        """Run when the plugin is added to a nanny."""

    def teardown(self, nanny: Any) -> None:
        """Run when the plugin is removed or the nanny closes."""


class Environ(NannyPlugin):
    """Environment variables for the worker processes of every current and future
    nanny (the nannies restart their workers so the variables apply)."""

    name = "environ"
    restart = True

    def __init__(self, environ: dict | None = None):
        self.environ = {str(k): str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny: Any) -> None:
        nanny.env.update(self.environ)

    def teardown(self, nanny: Any) -> None:
        for k in self.environ:
            nanny.env.pop(k, None)


def plugin_name(plugin: Any) -> str:
    """`plugin.name`, or a fresh name from its class."""
    name = getattr(plugin, "name", None)
    return name if name else f"{funcname(type(plugin))}-{uuid.uuid4()}"


# ---------------------------------------------------------------------- worker setups


async def add_worker_plugin(plugin: Any, name: str, dask_worker: Any = None) -> dict:
    """Worker setup (run on each worker by the scheduler): add `plugin` to the worker."""
    await dask_worker.plugin_add(plugin, name)
    return {"status": "OK"}


async def remove_worker_plugin(name: str, dask_worker: Any = None) -> dict:
    """Worker teardown (run on each worker by the scheduler): remove plugin `name`."""
    await dask_worker.plugin_remove(name)
    return {"status": "OK"}


# ---------------------------------------------------------------------- upload_file


class UploadFile(WorkerPlugin):
    """Save a file into each worker's local directory, which goes on `sys.path`; with
    `load`, import what it holds (a `.py` module, the top-level modules of a `.zip` /
    `.egg` / `.pyz` archive, which itself goes on `sys.path`), reloading modules
    imported before, so tasks see the new code."""

    name = "upload_file"

    def __init__(self, filepath: str, load: bool = True):
        with open(filepath, "rb") as f:
            self.data = f.read()
        self.filename = os.path.basename(filepath)
        self.load = load
        if load:
            check_importable(self.filename)

    def setup(self, worker: Any) -> None:
        directory = worker.local_directory
        path = os.path.join(directory, self.filename)
        with open(path, "wb") as f:
            f.write(self.data)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        if self.load:
            import_file(path)
            worker.clear_function_cache()  # functions unpickled before refer to the old code


class SchedulerUploadFile(SchedulerPlugin):
    """The scheduler's side of `upload_file`: the file in a directory of its own (on
    `sys.path`, removed when the plugin closes), imported with `load`, so functions sent
    with `run_on_scheduler` can use it too."""

    name = "upload_file"

    def __init__(self, filepath: str, load: bool = True):
        self.upload = UploadFile(filepath, load=load)
        self.directory: str | None = None

    def start(self, scheduler: Any) -> None:  # type: ignore[override]  # sync: a small file
        self.directory = tempfile.mkdtemp(prefix="shoal-scheduler-upload-")
        path = os.path.join(self.directory, self.upload.filename)
        with open(path, "wb") as f:
            f.write(self.upload.data)
        sys.path.insert(0, self.directory)
        if self.upload.load:
            try:
                import_file(path)
            except BaseException:
                self.close()  # not registered: nothing else would clean up
                raise

    def close(self) -> None:  # type: ignore[override]
        if self.directory is None:
            return
        for entry in (os.path.join(self.directory, self.upload.filename), self.directory):
            if entry in sys.path:
                sys.path.remove(entry)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None


def check_importable(filename: str) -> None:
    ext = os.path.splitext(filename)[1]
    if ext not in IMPORTABLE:
        raise ValueError(
            f"upload_file can only import {', '.join(IMPORTABLE)} files, not {filename!r}; "
            "pass load=False to only copy it into the workers' local directories"
        )


def import_file(path: str) -> list[ModuleType]:
    """Import (or reload) the modules a `.py` file or a `.zip`/`.egg`/`.pyz` archive
    holds; an archive is put on `sys.path` first. Returns the modules."""
    directory, filename = os.path.split(path)
    stem, ext = os.path.splitext(filename)
    check_importable(filename)
    if ext == ".py":
        try:  # a stale bytecode file with the same size and mtime would win over the new source
            os.remove(cache_from_source(path))
        except OSError:
            pass
        names = [stem]
        if directory not in sys.path:
            sys.path.insert(0, directory)
    else:
        if path not in sys.path:
            sys.path.insert(0, path)
        names = [info.name for info in pkgutil.iter_modules([path])]
        if not names:
            logger.warning("nothing to import in %s", filename)
    importlib.invalidate_caches()
    modules = []
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            logger.info("reloading module %s from %s", name, filename)
            modules.append(importlib.reload(module))
        else:
            modules.append(importlib.import_module(name))
    return modules


__all__ = [
    "Environ",
    "NannyPlugin",
    "SchedulerPlugin",
    "SchedulerUploadFile",
    "UploadFile",
    "WorkerPlugin",
    "import_file",
]


_BUILTIN = ("CondaInstall", "ForwardLoggingPlugin", "ForwardOutput", "InstallPlugin", "PipInstall", "UploadDirectory",
            "forward_stream")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _BUILTIN:  # distributed's ready-made plugins (they import this module)
        from shoal.diagnostics import builtin_plugins

        return getattr(builtin_plugins, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
