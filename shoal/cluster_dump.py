"""Cluster state dumps: `Client.dump_cluster_state` writes one, `load_cluster_dump` reads it.

A dump is one mapping ``{"scheduler": {...}, "workers": {address: {...}}, "versions":
{"scheduler": ..., "workers": {...}}}`` of plain data (str map keys, lists, numbers,
strings; anything else as its `repr`), written as gzipped msgpack (``<name>.msgpack.gz``)
or YAML (``<name>.yaml``, needs PyYAML). A name containing ``://`` is a URL opened with
fsspec (needs fsspec). Task keys that are not strings (tuples) appear as their `str`.

The state records are built here from the live scheduler and worker objects (it is for
debugging: it reads their records, never changes them).

    >>> state = load_cluster_dump("dask-cluster-dump.msgpack.gz")
    >>> state["scheduler"]["tasks"]["inc-abc"]["state"]
    'memory'
"""

from __future__ import annotations

import gzip
import os
from typing import Any

import msgpack

from shoal.scheduler.placement import priority_parts

FORMATS = ("msgpack", "yaml")


def plain(obj: Any) -> Any:
    """`obj` as data msgpack and YAML both store: dicts with str keys, lists, scalars."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(x) for x in obj]
    return repr(obj)


def _drop(record: dict, exclude: Any) -> dict:
    for name in exclude:
        record.pop(name, None)
    return record


def scheduler_state(scheduler: Any, exclude: Any = ()) -> dict:
    """The scheduler's records as plain data (fields named in `exclude` left out)."""
    st = scheduler.state
    tasks = {}
    for ts in st.tasks.values():
        tasks[str(ts.key)] = _drop(
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
        workers[ws.address] = _drop(
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
    return plain(_drop(out, exclude))


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
                    str(t.key): _drop(
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
    return plain(_drop(out, exclude))


def _path(filename: str, format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"Unsupported format {format!r}; expected one of {list(FORMATS)}")
    suffix = ".msgpack.gz" if format == "msgpack" else ".yaml"
    return filename if filename.endswith(suffix) else filename + suffix


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError(
            "dumping or loading the cluster state as YAML needs PyYAML (pip install pyyaml); "
            "or use format='msgpack'"
        ) from None
    return yaml


def _open(url: str, mode: str, storage_options: dict) -> Any:
    if "://" in url:
        try:
            import fsspec
        except ImportError:
            raise ImportError(f"writing or reading {url!r} needs fsspec (pip install fsspec)") from None
        return fsspec.open(url, mode, **storage_options)
    return open(url, mode)


def write_state(state: dict, filename: str, format: str = "msgpack", **storage_options: Any) -> str:
    """Write `state` (plain data) to `filename` + the format's suffix; returns the path."""
    path = _path(filename, format)
    if format == "msgpack":
        data = gzip.compress(msgpack.packb(state, use_bin_type=True))
        with _open(path, "wb", storage_options) as f:
            f.write(data)
    else:
        yaml = _yaml()
        with _open(path, "w", storage_options) as f:
            yaml.safe_dump(state, f)
    return path


def load_cluster_dump(url: str, format: str | None = None, **storage_options: Any) -> dict:
    """Read a dump written by `Client.dump_cluster_state` (format from the suffix
    ``.msgpack.gz`` / ``.yaml`` unless given); `url` may be a `pathlib.Path`."""
    url = os.fspath(url)
    if format is None:
        if url.endswith(".msgpack.gz"):
            format = "msgpack"
        elif url.endswith((".yaml", ".yml")):
            format = "yaml"
        else:
            raise ValueError(f"cannot tell the format of {url!r}: expected a .msgpack.gz or .yaml file")
    if format == "msgpack":
        with _open(url, "rb", storage_options) as f:
            return msgpack.unpackb(gzip.decompress(f.read()), raw=False, strict_map_key=False)
    if format == "yaml":
        yaml = _yaml()
        with _open(url, "r", storage_options) as f:
            return yaml.safe_load(f)
    raise ValueError(f"Unsupported format {format!r}; expected one of {list(FORMATS)}")


__all__ = ["load_cluster_dump", "write_state"]
