"""distributed's `Worker` options beyond the basics, and what they do over a worker's life.

`WorkerOptions` checks them when the worker is built (a typo or an impossible value fails
there, before anything starts) and acts at three moments the worker calls:

- `store()`: `data=` replaces the worker's result store: a `MutableMapping` (used as it
  is), a type or function (called), or ``(type, kwargs)``. Such a store does not spill
  (it decides itself where results live), so the memory thresholds other than `pause`
  do not apply to it;
- `started(worker)`: `plugins=` are added (`WorkerPlugin`s, set up before the first task),
  `preload=` scripts run their `dask_setup(worker)` (`shoal.preloading`), and with
  `lifetime=` a timer starts: after `lifetime` (± a random `lifetime_stagger`) the worker
  asks the scheduler to retire it (`retire_self`: its data moves to the others first) and
  closes; with `lifetime_restart=True` its nanny starts a fresh one, otherwise the nanny
  stops too. Defaults come from `shoal.worker.lifetime.{duration,stagger,restart}`;
- `closing(worker)`: the preloads' `dask_teardown(worker)`.

A worker in a process of its own (under a `Nanny`, or a `WorkerProcess`) gets its
options from its parent: `checked_worker_kwargs` checks them against `Worker`'s
signature where they are given, `write_worker_options` pickles them into a file only the
user reads, which `python -m shoal.worker --options PATH` loads and removes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
import uuid
from collections.abc import MutableMapping
from typing import Any

from dask.utils import parse_timedelta

from shoal import config
from shoal.preloading import Preloads

__all__ = ["WorkerOptions", "checked_worker_kwargs", "is_shoal_worker", "write_worker_options"]

logger = logging.getLogger("shoal.worker")


def _seconds(value: Any, what: str) -> float | None:
    if value in (None, False, "", "none", "None"):
        return None
    seconds = parse_timedelta(value, default="s")
    if seconds is None or seconds < 0:
        raise ValueError(f"Worker({what}={value!r}): must be a duration >= 0")
    return float(seconds)


class WorkerOptions:
    """See the module docstring."""

    def __init__(
        self,
        *,
        preload: Any = None,
        preload_argv: Any = None,
        lifetime: Any = None,
        lifetime_stagger: Any = None,
        lifetime_restart: bool | None = None,
        plugins: Any = (),
        data: Any = None,
    ):
        self.preloads = Preloads.from_options(preload, preload_argv)
        duration = _seconds(lifetime if lifetime is not None else config.get("worker.lifetime.duration", None), "lifetime")
        stagger = _seconds(
            lifetime_stagger if lifetime_stagger is not None else config.get("worker.lifetime.stagger", None),
            "lifetime_stagger",
        ) or 0.0
        if duration is not None:
            duration = max(0.0, duration + random.uniform(-stagger, stagger))
        #: seconds after start when the worker retires itself (None: never)
        self.lifetime = duration
        restart = lifetime_restart if lifetime_restart is not None else config.get("worker.lifetime.restart", False)
        self.lifetime_restart = bool(restart)
        self.plugins = list(plugins or ())
        for p in self.plugins:  # WorkerPlugins (shoal.diagnostics, a layer above: checked by what they have)
            if isinstance(p, type) or not (hasattr(p, "setup") or hasattr(p, "teardown") or hasattr(p, "transition")):
                raise TypeError(f"Worker(plugins=...): {p!r} is not a WorkerPlugin instance")
        if data is not None and not (
            isinstance(data, MutableMapping) or callable(data) or (isinstance(data, tuple) and len(data) == 2)
        ):
            raise TypeError(f"Worker(data={data!r}): give a MutableMapping, a type or function making one, or (type, kwargs)")
        self.data = data
        self._started = False

    # ------------------------------------------------------------------ the store

    def store(self) -> MutableMapping | None:
        """The result store `data=` asks for (None: the worker's own)."""
        data = self.data
        if data is None:
            return None
        if isinstance(data, MutableMapping):
            return data
        if isinstance(data, tuple):
            cls, kwargs = data
            made = cls(**(kwargs or {}))
        else:
            made = data()
        if not isinstance(made, MutableMapping):
            raise TypeError(f"Worker(data=...) made {type(made).__name__}, not a MutableMapping")
        return made

    # ------------------------------------------------------------------ start and close

    async def started(self, worker: Any) -> None:
        """Plugins, then preloads, then the lifetime timer (see the module docstring)."""
        self._started = True
        for plugin in self.plugins:
            name = getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4()}"
            await worker.plugin_add(plugin, name)
        await self.preloads.start(worker)
        if self.lifetime is not None:
            worker.spawn(self._retire_after(worker, self.lifetime))

    async def closing(self, worker: Any) -> None:
        if self._started:
            self._started = False
            await self.preloads.teardown(worker)

    async def _retire_after(self, worker: Any, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the lifetime is a duration by definition: nothing to poll
        if worker.status != "running":
            return
        logger.info("worker %s reached its lifetime (%.1f s); retiring it", worker.address, seconds)
        scheduler = worker.scheduler
        try:
            if scheduler is not None and not scheduler.closed:
                await scheduler.request("retire_self", close=not self.lifetime_restart)
        except Exception as e:  # noqa: BLE001 - the scheduler closed our connection as it retired us
            logger.debug("retire_self of %s ended with %s", worker.address, e)
        if worker.status == "running":
            await worker.close()


# ---------------------------------------------------------------------- options for a worker process


def is_shoal_worker(worker_class: Any) -> bool:
    """Whether `worker_class` names the Worker a nanny runs (shoal's or distributed's name)."""
    if isinstance(worker_class, str):
        return worker_class.rsplit(".", 1)[-1] == "Worker" and worker_class.split(".")[0] in ("shoal", "distributed")
    from shoal.worker.server import Worker

    return worker_class is Worker


def checked_worker_kwargs(kwargs: dict[str, Any], owner: str = "Nanny") -> dict[str, Any]:
    """The worker's keyword arguments a nanny passes on; an unknown one is a `TypeError`."""
    import inspect

    from shoal.worker.server import Worker

    accepted = inspect.signature(Worker.__init__).parameters
    unknown = sorted(k for k in kwargs if k not in accepted or k in _NANNY_OWNED)
    if unknown:
        raise TypeError(f"{owner}.__init__() got unexpected keyword arguments {unknown} (neither its own nor the worker's)")
    return dict(kwargs)


#: worker parameters the nanny sets itself
_NANNY_OWNED = frozenset({"scheduler_address", "nanny", "secret", "local_directory", "port", "self"})


def write_worker_options(directory: str | None, options: dict[str, Any]) -> str:
    """Worker options for `python -m shoal.worker --options PATH`: pickled (they may be
    objects) into a new file only this user reads, which the worker removes once read."""
    import cloudpickle

    fd, path = tempfile.mkstemp(prefix="worker-options-", suffix=".pickle", dir=directory)  # mode 0600
    with os.fdopen(fd, "wb") as f:
        cloudpickle.dump(options, f)
    return path
