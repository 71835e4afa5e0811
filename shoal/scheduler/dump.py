"""The scheduler's records as plain data, for cluster dumps (`shoal.cluster_dump` owns the
format). Read only: nothing here changes a record."""

from __future__ import annotations

from typing import Any

from shoal.cluster_dump import drop_fields, plain
from shoal.protocol.priority import priority_parts

__all__ = ["scheduler_state"]


def scheduler_state(scheduler: Any, exclude: Any = ()) -> dict:
    """The scheduler's records as plain data (fields named in `exclude` left out)."""
    st = scheduler.state
    tasks = {}
    for ts in st.tasks.values():
        tasks[str(ts.key)] = drop_fields(
            {
                "key": ts.key,
                "state": ts.state,
                "priority": priority_parts(ts.priority),
                "dependencies": [d.key for d in ts.dependencies],
                "dependents": [d.key for d in ts.dependents],
                "who_has": [w.address for w in ts.who_has],
                "processing_on": ts.processing_on.address if ts.processing_on else None,
                "who_wants": [c.id for c in ts.who_wants],
                "nbytes": ts.nbytes,
                "type": ts.type_name,
                "exception_text": ts.exception_text,
                "retries": ts.retries,
                "restrictions": ts.restrictions,
                "resources": ts.resources,
                "run_id": ts.run_id,
            },
            exclude,
        )
    workers = {}
    for ws in st.workers.values():
        workers[ws.address] = drop_fields(
            {
                "address": ws.address,
                "name": ws.name,
                "host": ws.host,
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "resources": ws.resources,
                "pid": ws.pid,
                "local_directory": ws.local_directory,
                "nanny": ws.nanny,
                "processing": [t.key for t in ws.processing],
                "long_running": [t.key for t in ws.long_running],
                "has_what": [t.key for t in ws.has_what],
                "nbytes": ws.nbytes,
                "versions": ws.versions,
            },
            exclude,
        )
    out = {
        "id": scheduler.id,
        "address": scheduler.address,
        "status": scheduler.status,
        "started": scheduler.started,
        "tasks": tasks,
        "workers": workers,
        "clients": {c.id: {"wants": [t.key for t in c.wants]} for c in st.clients.values()},
        "n_queued": st.n_queued,
        "unrunnable": [t.key for t in st.unrunnable],
        "stealing": {str(t.key): w.address for t, w in st.stealing.items()},
        "avg_duration": st.avg_duration,
        "transition_counter": st.transition_counter,
        "story": list(st.story_log),
    }
    return plain(drop_fields(out, exclude))
