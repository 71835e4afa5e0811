"""distributed's `Scheduler` options beyond the address, and what they do over its life.

`SchedulerOptions` checks them when the scheduler is built and acts at the moments the
scheduler calls:

- `take_overrides()`: `allowed_failures=`, `worker_ttl=` and `idle_timeout=` are the
  configuration keys `shoal.scheduler.{allowed-failures,worker-ttl,idle-timeout}` for
  this scheduler (the scheduler reads them while it is built);
- `started(scheduler)`: writes `scheduler_file=` (address and secret, readable by its
  owner only; `shoal worker --scheduler-file`, `Client(scheduler_file=)` read it), runs
  the `preload=` scripts' `dask_setup(scheduler)` (`shoal.preloading`), and with an idle
  timeout starts the check that closes a scheduler that had no work (no task queued,
  waiting for a worker, or processing, and no transition) for that long, as
  distributed's `idle_timeout` does;
- `closing(scheduler)`: the preloads' `dask_teardown`, then removes the scheduler file
  (if it still describes this scheduler).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from dask.utils import format_time, parse_timedelta

from shoal import config
from shoal.preloading import Preloads

__all__ = ["SchedulerOptions"]

logger = logging.getLogger("shoal.scheduler")


class SchedulerOptions:
    """See the module docstring."""

    def __init__(
        self,
        *,
        scheduler_file: str | None = None,
        preload: Any = None,
        preload_argv: Any = None,
        allowed_failures: int | None = None,
        worker_ttl: Any = None,
        idle_timeout: Any = None,
    ):
        self.scheduler_file = scheduler_file
        self.preloads = Preloads.from_options(preload, preload_argv)
        overrides: dict[str, Any] = {}
        if allowed_failures is not None:
            if int(allowed_failures) < 0:
                raise ValueError(f"Scheduler(allowed_failures={allowed_failures!r}): must be >= 0")
            overrides["shoal.scheduler.allowed-failures"] = int(allowed_failures)
        if worker_ttl is not None:
            overrides["shoal.scheduler.worker-ttl"] = worker_ttl
        if idle_timeout is not None:
            overrides["shoal.scheduler.idle-timeout"] = idle_timeout
        self._overrides = overrides
        self.idle_timeout: float | None = None
        self.idle_since: float | None = None
        self._started = False

    def take_overrides(self) -> dict[str, Any]:
        """The configuration to set while the scheduler is built (once: then empty)."""
        out, self._overrides = self._overrides, {}
        return out

    def read_config(self) -> None:
        """Read what depends on the configuration in force while the scheduler is built."""
        value = config.get("scheduler.idle-timeout", None)
        seconds = parse_timedelta(value, default="s") if value not in (None, False, "", "none", "None") else None
        if seconds is not None and seconds <= 0:
            seconds = None
        self.idle_timeout = seconds

    # ------------------------------------------------------------------ start and close

    async def started(self, scheduler: Any) -> None:
        self._started = True
        if self.scheduler_file:
            from shoal.scheduler_file import write_scheduler_file

            info = scheduler.identity()
            write_scheduler_file(self.scheduler_file, {**info, "workers": {}}, scheduler.secret)
        await self.preloads.start(scheduler)
        if self.idle_timeout is not None:
            scheduler.spawn(self._close_when_idle(scheduler, self.idle_timeout))

    async def closing(self, scheduler: Any) -> None:
        if not self._started:
            return
        self._started = False
        await self.preloads.teardown(scheduler)
        if self.scheduler_file:
            from shoal.scheduler_file import remove_scheduler_file

            remove_scheduler_file(self.scheduler_file, scheduler.id)

    # ------------------------------------------------------------------ idle timeout

    def check_idle(self, scheduler: Any, counter: list[int]) -> float | None:
        """When the scheduler became idle (None: it is busy); `counter` holds the state
        machine's transition count of the previous check."""
        st = scheduler.state
        if st.transition_counter != counter[0]:
            counter[0] = st.transition_counter
            self.idle_since = None
            return None
        if st.n_queued or st.unrunnable or any(ws.processing for ws in st.workers.values()):
            self.idle_since = None
            return None
        if self.idle_since is None:
            self.idle_since = time.monotonic()
        return self.idle_since

    async def _close_when_idle(self, scheduler: Any, timeout: float) -> None:
        counter = [scheduler.state.transition_counter]
        self.idle_since = time.monotonic()
        while scheduler.status == "running":
            await asyncio.sleep(min(timeout / 4, 1.0))  # a timer by definition: how long nothing happened
            since = self.check_idle(scheduler, counter)
            if since is not None and time.monotonic() - since >= timeout:
                logger.info("Scheduler closing after being idle for %s", format_time(timeout))
                scheduler.spawn(scheduler.close())
                return
