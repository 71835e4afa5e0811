"""Tasks that use the cluster: `get_client`, `worker_client`, `secede`, `rejoin`.

A task gets a client connected to its own scheduler (one per worker, created on first
use, closed with the worker; in a process that already has a default client for that
scheduler, that client). A task that waits on other tasks should `secede` first: its
thread leaves the worker's pool, so the worker can run the tasks it waits for, and the
scheduler stops counting it against the worker's slots. `rejoin` takes a pool thread's
place again once one is free. `worker_client()` does all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from shoal._context import current_worker, register_provider
from shoal.client.client import Client, default_client
from shoal.security import Security
from shoal.worker.extension import WorkerExtension
from shoal.worker.server import Worker, get_worker

__all__ = ["get_client", "get_worker", "rejoin", "secede", "worker_client"]

_clients: weakref.WeakKeyDictionary[Worker, Client] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _client_for(worker: Worker, timeout: Any) -> Client:
    with _lock:
        client = _clients.get(worker)
        if client is not None and client.status == "running":
            return client
        try:  # an in-process cluster: the user's own client already talks to this scheduler
            default = default_client()
            if getattr(default.scheduler, "address", None) == worker.scheduler_address and default.status == "running":
                _clients[worker] = default
                return default
        except ValueError:
            pass
        kwargs = {"timeout": timeout} if timeout is not None else {}
        client = Client(worker.scheduler_address, security=Security(worker.secret), name="worker", **kwargs)
        _clients[worker] = client

        worker.add_extension(f"task-client-{id(client)}", _TaskClient(worker, client))
        return client


class _TaskClient(WorkerExtension):
    """The worker's task-side client, closed with the worker."""

    def __init__(self, worker: Worker, client: Client):
        super().__init__(worker)
        self.client = client

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.client.close)


def get_client(address: str | None = None, timeout: Any = None, resolve_address: bool = True) -> Client:
    """Inside a task: a client of the task's scheduler. Elsewhere: the current client
    (or a new one for `address`)."""
    worker = current_worker()
    if isinstance(worker, Worker) and (address is None or address == worker.scheduler_address):
        return _client_for(worker, timeout)
    try:
        client = Client.current(allow_global=True)
        if address is None or getattr(client.scheduler, "address", None) == address:
            return client
    except ValueError:
        if address is None:
            raise ValueError("No global client found and no address provided") from None
    kwargs = {"timeout": timeout} if timeout is not None else {}
    return Client(address, **kwargs)


register_provider("get_client", get_client)


def secede() -> None:
    """Give the current task's thread back to the worker's pool; the task keeps running."""
    get_worker().secede()


def rejoin() -> None:
    """Wait for a free pool thread and take its place (after `secede`)."""
    get_worker().rejoin()


@contextlib.contextmanager
def worker_client(timeout: Any = None, separate_thread: bool = True) -> Iterator[Client]:
    """A client for use inside a task; with `separate_thread` the task secedes while in
    the block (so waiting on other tasks cannot deadlock the worker) and rejoins after."""
    worker = get_worker()
    client = get_client(timeout=timeout)
    if separate_thread:
        worker.secede()
    try:
        yield client
    finally:
        if separate_thread:
            worker.rejoin()


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {
        'local_client': 'shoal.worker_client:worker_client',
    },
)
