"""What the dashboard shows, computed from a `SchedulerState`: PURE (no I/O, no clock).

* `summary(state)`: per-state and per-prefix task counts and per-worker load, one walk
  over the tasks. The dashboard calls it at most once per update interval whoever asks
  (WebSocket viewers, `/metrics`, `/json/counts.json`), and not at all when no one asks.
* `compact_stream(records)`: task-stream records (as the workers send them) cut down to
  what the browser draws.
* `prometheus(summary, namespace)`: the Prometheus text exposition format (0.0.4).
* `counts_json(summary)`: the shape of `distributed`'s `/json/counts.json`.
"""

from __future__ import annotations

from typing import Any

from shoal.utils import key_prefix

#: task states in the order of the per-prefix count lists
STATES = ("released", "waiting", "queued", "no-worker", "processing", "memory", "erred")
_INDEX = {s: i for i, s in enumerate(STATES)}


def summary(state: Any, metrics: dict | None = None) -> dict:
    """Counts per state and per prefix, the workers' load and memory (`metrics`: worker
    address -> the scheduler's `metrics_of` figures: process memory split into managed,
    unmanaged and spilled), the clients."""
    metrics = metrics or {}
    prefixes: dict[str, list[int]] = {}
    index = _INDEX
    n = len(STATES)
    for ts in state.tasks.values():
        counts = prefixes.get(ts.prefix)
        if counts is None:
            counts = prefixes[ts.prefix] = [0] * n
        i = index.get(ts.state)
        if i is not None:
            counts[i] += 1
    totals = [sum(c[i] for c in prefixes.values()) for i in range(n)]
    workers = [
        {
            "address": ws.address,
            "name": str(ws.name),
            "host": ws.host,
            "nthreads": ws.nthreads,
            "processing": len(ws.processing),
            "executing": len(ws.started),
            "in_memory": len(ws.has_what),
            "nbytes": ws.nbytes,
            "memory_limit": ws.memory_limit or 0,
            "paused": ws.paused,
            **_memory(metrics.get(ws.address), ws.nbytes),
        }
        for ws in state.workers.values()
    ]
    return {
        "states": list(STATES),
        "totals": dict(zip(STATES, totals)),
        "prefixes": dict(sorted(prefixes.items())),
        "workers": workers,
        "n_tasks": len(state.tasks),
        "n_clients": len(state.clients),
        "transitions": state.transition_counter,
    }


def _memory(m: dict | None, nbytes: int) -> dict:
    """Process memory as managed (in memory) + unmanaged, and spilled (on disk); the
    worker process's CPU %, open file descriptors and its host's network rates."""
    if not m:
        return {"memory": nbytes, "managed": nbytes, "unmanaged": 0, "spilled": 0, "cpu": 0.0, "num_fds": 0,
                "read_bps": 0.0, "write_bps": 0.0}  # fmt: skip
    out: dict[str, Any] = {k: int(m.get(k, 0)) for k in ("memory", "managed", "unmanaged", "spilled")}
    net = m.get("host_net_io") or {}
    out.update(cpu=float(m.get("cpu", 0.0)), num_fds=int(m.get("num_fds", 0)),
               read_bps=float(net.get("read_bps", 0.0)), write_bps=float(net.get("write_bps", 0.0)))  # fmt: skip
    return out


def key_text(key: Any) -> str:
    """A task key as the pages show it."""
    return _key_str(key)


def _key_str(key: Any) -> str:
    if isinstance(key, list):
        key = tuple(key)
    return key if isinstance(key, str) else str(key)


def compact_stream(records: list[dict]) -> list[list]:
    """`[worker, thread, start, stop, key, prefix, status, transfers]` per record, where
    `transfers` is `[[start, stop], ...]`."""
    out = []
    for r in records:
        key = r["key"]
        if isinstance(key, list):
            key = tuple(key)
        transfers = []
        start = stop = 0.0
        for ss in r["startstops"]:
            if ss["action"] == "compute":
                start, stop = ss["start"], ss["stop"]
            else:
                transfers.append([ss["start"], ss["stop"]])
        out.append([r["worker"], r["thread"], start, stop, _key_str(key), key_prefix(key), r["status"], transfers])
    return out


def counts_json(s: dict) -> dict:
    """`/json/counts.json` in `distributed`'s shape."""
    t = s["totals"]
    workers = s["workers"]
    return {
        "bytes": sum(w["nbytes"] for w in workers),
        "clients": s["n_clients"],
        "cores": sum(w["nthreads"] for w in workers),
        "erred": t["erred"],
        "hosts": len({w["host"] for w in workers}),
        "idle": sum(1 for w in workers if not w["processing"]),
        "memory": t["memory"],
        "processing": t["processing"],
        "released": t["released"],
        "saturated": sum(1 for w in workers if w["processing"] > w["nthreads"]),
        "tasks": s["n_tasks"],
        "unrunnable": t["no-worker"],
        "waiting": t["waiting"] + t["queued"],
        "waiting_data": t["waiting"],
        "workers": len(workers),
        "desired_workers": len(workers),
    }


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus(s: dict, namespace: str = "dask") -> str:
    """The scheduler's metrics in the Prometheus text format, version 0.0.4."""
    ns = f"{namespace}_scheduler" if namespace else "scheduler"
    lines: list[str] = []

    def family(name: str, kind: str, doc: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {ns}_{name} {doc}")
        lines.append(f"# TYPE {ns}_{name} {kind}")
        for labels, value in samples:
            lines.append(f"{ns}_{name}{labels} {value}")

    workers = s["workers"]
    family("clients", "gauge", "Number of clients connected", [("", s["n_clients"])])
    family("workers", "gauge", "Number of workers connected", [("", len(workers))])
    family("threads", "gauge", "Worker threads in the cluster", [("", sum(w["nthreads"] for w in workers))])
    family(
        "tasks", "gauge", "Number of tasks known by the scheduler, by state",
        [(f'{{state="{_label(st)}"}}', n) for st, n in s["totals"].items()],
    )  # fmt: skip
    family(
        "prefix_tasks", "gauge", "Number of tasks known by the scheduler, by task prefix and state",
        [
            (f'{{task_prefix_name="{_label(p)}",state="{_label(st)}"}}', n)
            for p, counts in s["prefixes"].items()
            for st, n in zip(s["states"], counts)
            if n
        ],
    )  # fmt: skip
    family("managed_memory_bytes", "gauge", "Bytes of task results held by workers",
           [("", sum(w["nbytes"] for w in workers))])  # fmt: skip
    family("transitions_total", "counter", "Task state transitions since the scheduler started",
           [("", s["transitions"])])  # fmt: skip
    return "\n".join(lines) + "\n"
