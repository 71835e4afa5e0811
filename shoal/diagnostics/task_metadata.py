"""`get_task_metadata`: what became of every task asked for inside a ``with`` block.

On entry the scheduler starts a `MetadataWatch` (`shoal/scheduler/observers.py`) that
notes the keys of every graph submitted while it is open and records each one's final
state and metadata the moment it finishes (before the task may be forgotten); on exit
the client collects them and the watch is removed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_task_metadata"]


class get_task_metadata:
    """Collect metadata and final states of the tasks submitted inside the block.

    >>> with get_task_metadata() as tasks:  # doctest: +SKIP
    ...     x.compute()
    >>> tasks.metadata  # doctest: +SKIP
    {key: {"state": "memory", "nbytes": ..., "type": ..., "workers": [...], ...}}
    >>> tasks.state  # doctest: +SKIP
    {key: "memory"}

    Only keys asked for by a client while the block was open, and finished (in memory
    or erred) before it closed, are included. Blocks may nest; each collects on its own.
    """

    def __init__(self) -> None:
        self.metadata: dict | None = None
        self.state: dict | None = None
        self.client: Any = None
        self._id: int | None = None

    async def _start(self) -> int:
        self.client.outbox.flush()
        return await self.client.scheduler_comm.request("task_metadata_start")

    async def _stop(self) -> dict:
        self.client.outbox.flush()
        return await self.client.scheduler_comm.request("task_metadata_stop", watch_id=self._id)

    def _finish(self, reply: dict) -> None:
        # msgpack brings lists back as tuples: give every transport the same shape
        self.metadata = {
            key: {k: list(v) if type(v) is tuple else v for k, v in meta.items()}
            for key, meta in reply["metadata"].items()
        }
        self.state = dict(reply["state"])

    def __enter__(self) -> get_task_metadata:
        from shoal.worker_client import get_client

        self.client = get_client()
        self._id = self.client.sync(self._start, asynchronous=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._finish(self.client.sync(self._stop, asynchronous=False))

    async def __aenter__(self) -> get_task_metadata:
        from shoal.worker_client import get_client

        self.client = get_client()
        self._id = await self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._finish(await self._stop())
