"""Notebook reprs (`_repr_html_`) of `Client`, `LocalCluster` and `Future`.

Plain HTML, no scripts, no external resources; every string that comes from users or
peers (keys, names, addresses, exception texts) is escaped. Cluster totals are computed
from the same snapshot as the worker list, so they always agree; long worker lists are
cut at `MAX_WORKERS` rows and say so; links appear only for pages that exist.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

from shoal.utils import format_bytes

MAX_WORKERS = 50

_STATUS_COLORS = {"finished": "#2a7d2a", "error": "#c0392b", "cancelled": "#8a6d00", "lost": "#c0392b"}

_TABLE = 'style="text-align:left;border-collapse:collapse"'


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in pairs)


def identity_html(info: dict, title: str = "Scheduler") -> str:
    """A scheduler `identity()` snapshot: totals, then the workers in a collapsible list."""
    workers = info.get("workers") or {}
    n = len(workers)
    threads = sum(int(w.get("nthreads") or 0) for w in workers.values())
    memory = sum(int(w.get("memory_limit") or 0) for w in workers.values())
    head = _rows(
        [
            ("Address", info.get("address", "")),
            ("Workers", n),
            ("Total threads", threads),
            ("Total memory", format_bytes(memory) if memory else "unlimited"),
        ]
    )
    rows = []
    for addr, w in sorted(workers.items())[:MAX_WORKERS]:
        mem = int(w.get("memory_limit") or 0)
        rows.append(
            "<tr>"
            f"<td>{escape(str(w.get('name', addr)))}</td><td>{escape(str(addr))}</td>"
            f"<td>{escape(str(w.get('nthreads', '')))}</td>"
            f"<td>{escape(format_bytes(mem) if mem else 'unlimited')}</td>"
            f"<td>{escape(str(w.get('local_directory', '')))}</td>"
            "</tr>"
        )
    shown = f" ({min(n, MAX_WORKERS)} of {n} shown)" if n > MAX_WORKERS else ""
    worker_table = (
        f"<details><summary>Workers: {n}{escape(shown)}</summary><table {_TABLE}>"
        "<tr><th>Name</th><th>Address</th><th>Threads</th><th>Memory</th><th>Local directory</th></tr>"
        f"{''.join(rows)}</table></details>"
        if n
        else ""
    )
    return f"<div><b>{escape(title)}</b><table {_TABLE}>{head}</table>{worker_table}</div>"


def client_html(client: Any, info: dict, address: str) -> str:
    """A client: its connection, the scheduler at `address` and `info`, the scheduler's
    latest `identity()` (ignored once the client is closed: it has no cluster to show)."""
    closed = client.status in ("closing", "closed")
    info = {} if closed else info
    cluster = client.cluster
    connection = f"Cluster object: {type(cluster).__name__}" if cluster is not None else "Direct"
    pairs: list[tuple[str, Any]] = [
        ("Connection method", connection),
        ("Status", client.status),
        ("Scheduler", address or ""),
    ]
    link = "" if closed else client.dashboard_link
    dashboard = f'<tr><th>Dashboard</th><td><a href="{escape(link)}">{escape(link)}</a></td></tr>' if link else ""
    body = identity_html(info) if info else ""
    title = "Client (closed)" if closed else "Client"
    return (
        f"<div><h3 style=\"margin:0\">{title}</h3><p>{escape(client.id)}</p>"
        f"<table {_TABLE}>{_rows(pairs)}{dashboard}</table>{body}</div>"
    )


def cluster_html(cluster: Any) -> str:
    info = _cluster_identity(cluster)
    pairs: list[tuple[str, Any]] = [("Name", cluster.name), ("Status", cluster.status)]
    address = _address_or_empty(cluster)
    if address:
        pairs.append(("Scheduler", address))
    body = identity_html(info) if info else ""
    return (
        f"<div><h3 style=\"margin:0\">{escape(type(cluster).__name__)}</h3>"
        f"<table {_TABLE}>{_rows(pairs)}</table>{body}</div>"
    )


def _address_or_empty(cluster: Any) -> str:
    try:
        return cluster.scheduler_address
    except Exception:  # noqa: BLE001 - not started yet
        return ""


def _cluster_identity(cluster: Any) -> dict:
    scheduler = getattr(cluster, "scheduler", None)
    if scheduler is None or getattr(scheduler, "status", None) != "running":
        return {}

    async def snapshot() -> dict:
        return scheduler.identity()

    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is cluster.loop:
            return scheduler.identity()
        return asyncio.run_coroutine_threadsafe(snapshot(), cluster.loop).result(2)
    except Exception:  # noqa: BLE001 - a repr must not fail
        return {}


def future_html(future: Any, st: Any) -> str:
    """A future of key `future.key` whose client-side state is `st` (a `FutureState`, or
    None for an unbound future)."""
    status = st.status if st is not None else "unbound"
    color = _STATUS_COLORS.get(status, "#555555")
    parts = [
        f"<b>Future: {escape(str(future.key))}</b>",
        f'<b>status:</b> <span style="color:{color}">{escape(status)}</span>',
    ]
    if st is not None and status == "finished" and st.type_name:
        parts.append(f"<b>type:</b> {escape(str(st.type_name))}")
    if st is not None and status == "error" and getattr(st, "text", None):
        parts.append(f"<b>exception:</b> {escape(str(st.text))}")
    return "<div>" + ", ".join(parts) + "</div>"
