"""The worker's records as plain data, for cluster dumps (`shoal.cluster_dump` owns the
format). Read only: nothing here changes a record."""

from __future__ import annotations

from typing import Any

from shoal.cluster_dump import drop_fields, plain
from shoal.protocol.priority import priority_parts

__all__ = ["worker_state"]


def worker_state(worker: Any, exclude: Any = ()) -> dict:
    """A worker's records as plain data (fields named in `exclude` left out)."""
    ws = worker.state
    out: dict = {
        "address": worker.address,
        "name": worker.name,
        "status": worker.status,
        "nthreads": worker.nthreads,
        "memory_limit": worker.memory_limit,
        "local_directory": worker.local_directory,
    }
    if ws is not None:
        out.update(
            {
                "resources": ws.total_resources,
                "available_resources": ws.available_resources,
                "tasks": {
                    str(t.key): drop_fields(
                        {
                            "key": t.key,
                            "state": t.state,
                            "run_id": t.run_id,
                            "priority": priority_parts(t.priority),
                            "dependencies": t.dependencies,
                            "waiting_for": t.waiting_for,
                            "resources": t.resources,
                        },
                        exclude,
                    )
                    for t in ws.tasks.values()
                },
                "data": {
                    str(k): {"key": k, "type": type(v).__qualname__, "nbytes": ws.nbytes.get(k, 0)}
                    for k, v in list(ws.data.items())
                },
                "executing": list(ws.executing),
                "n_ready": len(ws.ready),
                "fetch": {
                    str(k): {
                        "holders": f.holders,
                        "needed_by": f.needed_by,
                        "tried": f.tried,
                        "in_flight_from": f.in_flight_from,
                    }
                    for k, f in ws.fetch.items()
                },
                "in_flight": ws.in_flight,
                "executed_count": ws.executed_count,
                "avg_duration": ws.avg_duration,
                "story": list(ws.story_log),
            }
        )
    return plain(drop_fields(out, exclude))
