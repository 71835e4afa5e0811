"""Replaying a task in the local process: `Client.recreate_task_locally` and
`Client.recreate_error_locally` (attached to every client by `ReplayTaskClient`).

The scheduler hands over the task's opaque spec and its dependencies' keys; the client
fetches the dependencies' values (recomputed from lineage if they were released) and
runs the task here with the same code path a worker uses (`shoal.graph.spec.run_task`),
so the result — or the original exception, for a debugger to catch — appears locally.
"""

from __future__ import annotations

from typing import Any

from shoal.client.futures import Future
from shoal.client.helpers import futures_of, wait
from shoal.graph.spec import run_task
from shoal.protocol import messages as m

__all__ = ["ReplayTaskClient"]


class ReplayTaskClient:
    """Attaches `recreate_task_locally` and `recreate_error_locally` to a client."""

    def __init__(self, client: Any):
        self.client = client
        client.recreate_task_locally = self.recreate_task_locally
        client.recreate_error_locally = self.recreate_error_locally

    @property
    def scheduler(self) -> Any:
        return self.client.scheduler

    def recreate_task_locally(self, future: Any) -> Any:
        """Run the task behind `future` (or a key) in this process; return its result."""
        if isinstance(future, Future):
            wait(future)
            key = future.key
        else:
            key = future
        return self._run_locally(self._task_spec(key))

    def recreate_error_locally(self, future: Any) -> None:
        """Re-raise, in this process, the failure behind an erred future or collection:
        the task that actually failed is run here on its real inputs."""
        futures = futures_of(future)
        if futures:
            wait(futures)
        erred = [f for f in futures if f.status == "error"]
        if not erred:
            raise ValueError("No errored futures passed")
        self._run_locally(self._task_spec(erred[0].key, blame=True))

    def _task_spec(self, key: Any, blame: bool = False) -> dict:
        """The scheduler's `task_spec` of `key` (with `blame`: of the task that failed first)."""
        client = self.client
        kwargs = {"key": key, "blame": True} if blame else {"key": key}
        return client.sync(client.scheduler.request, "task_spec", **kwargs)

    def _run_locally(self, info: dict) -> Any:
        client = self.client
        if info["missing"]:
            raise KeyError(
                f"cannot replay {info['key']!r}: its dependencies {info['missing']} are no longer known to the scheduler"
            )
        deps = [Future(k, client) for k in info["deps"]]
        try:
            if deps:
                client.outbox.send(m.DesireKeys(tuple(info["deps"]), client.id))
            values = dict(zip(info["deps"], client.gather(deps)))
            return run_task(info["key"], info["func"], info["spec"], values)
        finally:
            for f in deps:
                f.release()


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'ReplayTaskScheduler': "the scheduler side of recreate_task_locally is shoal's own; use Client.recreate_task_locally / recreate_error_locally",
    },
)
