"""Events and messages for the pure state machines, with defaults a test rarely changes.

Stimulus ids come from one counter (``b1``, ``b2``, ...) unless given."""

from __future__ import annotations

import itertools
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, RemoveWorker, WorkerMsg
from shoal.worker.state import ComputeTaskEvent, ExecuteSuccess

__all__ = [
    "SPEC", "add_client", "add_worker", "compute_task", "execute_success", "register_worker",
    "remove_worker", "sid", "task_finished", "update_graph",
]  # fmt: skip

#: a task spec that runs nothing (the state machines never look inside)
SPEC: Pickled = dumps(((), {}))

_ids = itertools.count(1)


def sid(prefix: str = "b") -> str:
    """A fresh stimulus id."""
    return f"{prefix}{next(_ids)}"


def register_worker(address: str, nthreads: int = 1, *, name: Any = None, memory_limit: int = 0,
                    resources: dict | None = None) -> m.RegisterWorker:  # fmt: skip
    return m.RegisterWorker(address, name or address, nthreads, memory_limit, resources or {}, 1, "/tmp", {}, None)


def add_worker(address: str, nthreads: int = 1, **kwargs: Any) -> AddWorker:
    return AddWorker(sid(), register_worker(address, nthreads, **kwargs))


def remove_worker(address: str, reason: str = "test") -> RemoveWorker:
    return RemoveWorker(sid(), address, reason)


def add_client(client_id: str = "c") -> AddClient:
    return AddClient(sid(), client_id)


def update_graph(
    graph: dict, wanted: Any = None, client: str = "c", annotations: dict | None = None
) -> ClientMsg:
    """`graph` is ``{key: [dependency keys]}`` (in graph order); `wanted` defaults to the
    keys nothing else depends on; `annotations` is ``{key: {...}}``."""
    if wanted is None:
        needed = {d for deps in graph.values() for d in deps}
        wanted = [k for k in graph if k not in needed]
    annotations = annotations or {}
    tasks = tuple(
        (key, -1, SPEC, tuple(deps), (0, 0, i), annotations.get(key)) for i, (key, deps) in enumerate(graph.items())
    )
    return ClientMsg(sid(), client, m.UpdateGraph(tasks, (), tuple(wanted)))


def task_finished(worker: str, key: Any, run_id: int, nbytes: int = 8, type_name: str = "int",
                  start: float = 0.0, stop: float = 0.001) -> WorkerMsg:  # fmt: skip
    return WorkerMsg(sid(), worker, m.TaskFinished(key, run_id, nbytes, type_name, start, stop, None))


def compute_task(key: Any, run_id: int = 1, who_has: dict | None = None, *, priority: int = 0,
                 resources: dict | None = None, nbytes: int = 8) -> ComputeTaskEvent:  # fmt: skip
    """A worker's `compute-task` event; `who_has` is ``{dependency: [holders]}``."""
    who_has = {k: tuple(v) for k, v in (who_has or {}).items()}
    msg = m.ComputeTask(key, run_id, None, SPEC, priority, who_has, dict.fromkeys(who_has, nbytes), resources, False)
    return ComputeTaskEvent(sid(), msg)


def execute_success(key: Any, run_id: int, value: Any = None, nbytes: int = 8,
                    start: float = 0.0, stop: float = 0.001) -> ExecuteSuccess:  # fmt: skip
    return ExecuteSuccess(sid(), key, run_id, value, nbytes, type(value).__name__, start, stop, None)
