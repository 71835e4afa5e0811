"""`performance_report`: one self-contained HTML file describing what a block of code did.

    with performance_report(filename="dask-report.html"):
        x.compute()

On entry the client notes the time and each worker's task-stream position; on exit it
fetches (as data, over the normal request path) the task stream of the block, the
workers' statistical profile of their task threads and of their event loops, the
scheduler's own profile and the workers' memory (RSS) history, and renders the page
itself, so a large report never stalls the scheduler. The page has a summary (duration,
tasks, compute / transfer time and bytes by task prefix, cluster size, versions), the task
stream timeline, icicle graphs of the profiles with their top functions, the memory chart
and the code of the ``with`` block. It is inline SVG and CSS only: no scripts, no network
resources, so it opens offline; every user string is escaped. The collected data stay on
the context object as `data` (a dict).

`filename` is written with `fsspec` when it is installed (so ``s3://...`` URLs and
``compression="infer"`` work), otherwise with `open`. `mode` exists for `distributed`'s
signature (bokeh's inline/cdn resources); the page never loads anything, whatever it is.
The task stream comes from the workers' bounded ring buffers
(`shoal.worker.task-stream-length`): when a block ran more tasks than they hold, the oldest
are missing and the page says so.
"""

from __future__ import annotations

import html
import linecache
import os
import platform
import sys
import time
from typing import Any, Self

from shoal.diagnostics.profile_plot import profile_svg, top_functions
from shoal.diagnostics.svg_page import hue
from shoal.diagnostics.task_stream import fetch_task_stream, render_svg
from shoal.utils import format_bytes, key_prefix

__all__ = ["performance_report", "render_report", "summarize"]


class performance_report:
    """Gather performance data of the block into a standalone HTML file (sync or async).

    >>> with performance_report(filename="dask-report.html"):  # doctest: +SKIP
    ...     x.compute()
    """

    def __init__(
        self, filename: str = "dask-report.html", stacklevel: int = 1, mode: str | None = None,
        storage_options: dict | None = None,
    ):  # fmt: skip
        self.filename = filename
        self._stacklevel = stacklevel if stacklevel > 0 else 1
        self.mode = mode
        self.storage_options = storage_options or {}
        self.data: dict = {}
        self._start = 0.0
        self._since: dict | None = None
        self._code = ""
        self._client: Any = None

    def _get_client(self) -> Any:
        from shoal.client.client import default_client

        return default_client()

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> Self:
        self._code = _caller_source(self._stacklevel + 1)
        client = self._client = self._get_client()
        self._since = client.sync(self._begin, client, asynchronous=False)
        return self

    def __exit__(self, *exc: object) -> None:
        client = self._client
        self.data = client.sync(self._collect, client, asynchronous=False)
        self._write()

    async def __aenter__(self) -> Self:
        self._code = _caller_source(self._stacklevel + 1)
        client = self._client = self._get_client()
        self._since = await self._begin(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.data = await self._collect(self._client)
        self._write()

    # ---------------------------------------------------------------- data

    async def _begin(self, client: Any) -> dict:
        self._start = time.time()
        return (await fetch_task_stream(client, count=0))["counts"]

    async def _collect(self, client: Any) -> dict:
        stop = time.time()
        start = self._start
        stream = await fetch_task_stream(client, since=self._since)
        request = client.scheduler_comm.request
        compute = await request("profile", start=start, stop=stop)
        server = await request("profile", start=start, stop=stop, server=True)
        scheduler = await request("profile", start=start, stop=stop, scheduler=True)
        memory = await request("memory_history", start=start, stop=stop)
        info = await request("identity")
        since = self._since or {}
        expected = sum(n - since.get(w, 0) for w, n in stream["counts"].items())
        records = stream["records"]
        return {
            "start": start,
            "stop": stop,
            "duration": stop - start,
            "code": self._code,
            "cluster": {
                "scheduler": info.get("address"),
                "workers": info.get("n_workers", 0),
                "threads": info.get("total_threads", 0),
                "memory": info.get("total_memory", 0),
            },
            "versions": _versions(),
            "task_stream": records,
            "tasks_missing": max(expected - len(records), 0),
            "summary": summarize(records),
            "profile": compute,
            "profile_server": server,
            "profile_scheduler": scheduler,
            "memory": {w: [tuple(s) for s in samples] for w, samples in memory.items()},
        }

    def _write(self) -> None:
        page = render_report(self.data)
        if "://" in self.filename or self.storage_options:
            try:
                import fsspec
            except ImportError:
                raise ImportError(
                    f"writing a performance report to {self.filename!r} needs fsspec (pip install fsspec)"
                ) from None
            with fsspec.open(self.filename, "w", compression="infer", **self.storage_options) as f:
                f.write(page)
        else:
            with open(self.filename, "w", encoding="utf-8") as f:
                f.write(page)


def _versions() -> dict:
    import dask

    from shoal.versions import get_versions

    return {"shoal": get_versions()["shoal"], "dask": dask.__version__, "python": platform.python_version()}


def _caller_source(depth: int) -> str:
    """`_block_source` of the frame `depth` levels above this function's (1: its caller)."""
    try:
        frame = sys._getframe(depth)
    except ValueError:  # stacklevel beyond the outermost frame
        return "# (source not available: stacklevel is deeper than the call stack)\n"
    return _block_source(frame)


def _block_source(frame: Any) -> str:
    """The ``with`` statement at `frame`'s current line and the block under it."""
    filename = frame.f_code.co_filename
    lineno = frame.f_lineno
    lines = linecache.getlines(filename, frame.f_globals)
    where = f"# {filename}:{lineno}\n"
    if not lines or lineno > len(lines):
        return where + "# (source not available)\n"
    first = lines[lineno - 1]
    indent = len(first) - len(first.lstrip())
    block = [first]
    for line in lines[lineno:]:
        stripped = line.strip()
        if stripped and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    while block and not block[-1].strip():
        block.pop()
    return where + "".join(
        "\n" if not line.strip() else line[indent:] if line[:indent].isspace() else line for line in block
    )


def summarize(records: list[dict]) -> dict:
    """Totals of task-stream records: tasks, errors, compute and transfer seconds, bytes
    moved between workers (each transfer once), and the same by task prefix."""
    prefixes: dict[str, dict] = {}
    transfers: dict[tuple, int] = {}
    compute_total = 0.0
    transfer_total = 0.0
    errors = 0
    for r in records:
        p = prefixes.get(prefix := key_prefix(r["key"]))
        if p is None:
            p = prefixes[prefix] = {"count": 0, "errors": 0, "compute": 0.0, "transfer": 0.0, "nbytes": 0}
        p["count"] += 1
        if r.get("status") == "error":
            p["errors"] += 1
            errors += 1
        else:
            p["nbytes"] += r.get("nbytes") or 0
        for ss in r["startstops"]:
            dt = ss["stop"] - ss["start"]
            if ss.get("action") == "transfer":
                p["transfer"] += dt
                transfer_total += dt
                transfers[(r.get("worker"), ss.get("source"), ss["start"], ss["stop"])] = ss.get("nbytes") or 0
            elif ss.get("action", "compute") == "compute":
                p["compute"] += dt
                compute_total += dt
    return {
        "tasks": len(records),
        "errors": errors,
        "compute_time": compute_total,
        "transfer_time": transfer_total,
        "transfers": len(transfers),
        "bytes_moved": sum(transfers.values()),
        "prefixes": dict(sorted(prefixes.items(), key=lambda kv: -kv[1]["compute"])),
    }


# ---------------------------------------------------------------------------- rendering

_CSS = (
    "body{font-family:sans-serif;margin:1.2em;color:#222}h1{margin-bottom:.2em}"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td.l,th.l{text-align:left}pre{background:#f7f7f7;padding:.8em;overflow:auto}"
    "nav a{margin-right:1em}.scroll{overflow-x:auto}svg text{font-size:11px}.note{color:#a33}"
)


def _row(cells: list[Any], head: bool = False, left: int = 1) -> str:
    tag = "th" if head else "td"
    return "<tr>" + "".join(
        f'<{tag}{" class=l" if i < left else ""}>{html.escape(str(c))}</{tag}>' for i, c in enumerate(cells)
    ) + "</tr>"


def _seconds(s: float) -> str:
    return f"{s:.3f} s" if s < 100 else f"{s:.0f} s"


def _profile_section(tree: dict, label: str) -> str:
    parts = [f"<p>{tree.get('count', 0)} samples.</p>", f'<div class="scroll">{profile_svg(tree, label=label)}</div>']
    top = top_functions(tree, 15) if tree.get("count") else []
    if top:
        parts.append("<table>" + _row(["function", "where", "own samples", "total samples"], head=True, left=2))
        parts.extend(_row(list(t), left=2) for t in top)
        parts.append("</table>")
    return "".join(parts)


def _memory_svg(memory: dict, start: float, stop: float) -> str:
    series = {w: s for w, s in memory.items() if s}
    if not series:
        return "<p>No memory samples (shoal.worker.memory-history.interval is 0, or the block was shorter).</p>"
    width, height, left, top = 1000, 260, 80, 10
    t0 = min(start, min(s[0][0] for s in series.values()))
    t1 = max(stop, max(s[-1][0] for s in series.values()))
    span = max(t1 - t0, 1e-6)
    # samples are (time, rss) or (time, rss, managed, spilled): spilled bytes (on disk)
    # are drawn dashed, on the same scale
    peak = max(max(s[1], s[3] if len(s) > 3 else 0) for ss in series.values() for s in ss) or 1
    out = [
        f'<svg width="{left + width + 20}" height="{height + top + 60}" role="img" aria-label="worker memory">',
        f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#888"/>',
    ]
    for k in range(5):
        v = peak * k / 4
        y = top + height - height * k / 4
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{html.escape(format_bytes(v))}</text>')
    for k in range(6):
        x = left + width * k / 5
        out.append(f'<text x="{x:.1f}" y="{top + height + 16}" text-anchor="middle">{span * k / 5:.3g} s</text>')
    ly = top + height + 36
    lx = left
    for w, samples in sorted(series.items()):
        color = hue(w, 60, 45)
        pts = " ".join(
            f"{left + (s[0] - t0) / span * width:.1f},{top + height - s[1] / peak * height:.1f}" for s in samples
        )
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}">')
        out.append(f"<title>{html.escape(f'{w}: peak {format_bytes(max(s[1] for s in samples))}')}</title></polyline>")
        spilled = max((s[3] for s in samples if len(s) > 3), default=0)
        if spilled:
            pts = " ".join(
                f"{left + (s[0] - t0) / span * width:.1f},{top + height - s[3] / peak * height:.1f}"
                for s in samples if len(s) > 3
            )  # fmt: skip
            out.append(f'<polyline fill="none" stroke="{color}" stroke-dasharray="5,3" points="{pts}">')
            out.append(f"<title>{html.escape(f'{w}: spilled to disk, peak {format_bytes(spilled)}')}</title></polyline>")
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}">{html.escape(w)}</text>')
        lx += 30 + 7 * len(w)
    out.append("</svg>")
    return "".join(out)


def render_report(data: dict) -> str:
    """The report page for `performance_report.data`."""
    esc = html.escape
    s = data["summary"]
    cl = data["cluster"]
    v = data["versions"]
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["start"]))
    summary = [
        ["Duration", _seconds(data["duration"])],
        ["Started", started],
        ["Tasks", s["tasks"]],
        ["Failed tasks", s["errors"]],
        ["Compute time (sum over threads)", _seconds(s["compute_time"])],
        ["Transfer time (sum)", _seconds(s["transfer_time"])],
        ["Transfers between workers", s["transfers"]],
        ["Bytes moved between workers", format_bytes(s["bytes_moved"])],
        ["Workers / threads / memory", f"{cl['workers']} / {cl['threads']} / {format_bytes(cl['memory'] or 0)}"],
        ["Scheduler", cl["scheduler"]],
        ["Versions", ", ".join(f"{k} {val}" for k, val in v.items())],
    ]
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Dask Performance Report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Dask Performance Report</h1>",
        "<nav>"
        + "".join(
            f'<a href="#{a}">{t}</a>'
            for a, t in [
                ("summary", "Summary"), ("task-stream", "Task Stream"), ("profile", "Worker Profile (compute)"),
                ("profile-server", "Worker Profile (administrative)"), ("profile-scheduler", "Scheduler Profile"),
                ("memory", "Worker Memory"), ("code", "Code"),
            ]
        )
        + "</nav>",
        '<h2 id="summary">Summary</h2><table>',
        *(_row(r) for r in summary),
        "</table>",
    ]
    if data.get("tasks_missing"):
        parts.append(
            f'<p class="note">{data["tasks_missing"]} tasks of this block are missing: they ran before the '
            "workers' task-stream buffers (shoal.worker.task-stream-length) wrapped around.</p>"
        )
    if s["prefixes"]:
        parts.append("<h3>By task prefix</h3><table>")
        parts.append(_row(["prefix", "tasks", "errors", "compute", "transfer", "output bytes"], head=True))
        for prefix, p in s["prefixes"].items():
            cells = [prefix, p["count"], p["errors"], _seconds(p["compute"]), _seconds(p["transfer"])]
            parts.append(_row([*cells, format_bytes(p["nbytes"])]))
        parts.append("</table>")
    parts.append('<h2 id="task-stream">Task Stream</h2>')
    if data["task_stream"]:
        svg = render_svg(data["task_stream"]).replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)  # inline SVG
        parts.append(f'<div class="scroll">{svg}</div>')
    else:
        parts.append("<p>No tasks finished inside the block.</p>")
    parts.append('<h2 id="profile">Worker Profile (compute)</h2>')
    parts.append(_profile_section(data["profile"], "worker profile"))
    parts.append('<h2 id="profile-server">Worker Profile (administrative)</h2>')
    parts.append(_profile_section(data["profile_server"], "worker event loop profile"))
    parts.append('<h2 id="profile-scheduler">Scheduler Profile (administrative)</h2>')
    parts.append(_profile_section(data["profile_scheduler"], "scheduler profile"))
    parts.append('<h2 id="memory">Worker Memory</h2>')
    parts.append("<p>Process memory of each worker (solid) and its results spilled to disk (dashed).</p>")
    parts.append(f'<div class="scroll">{_memory_svg(data["memory"], data["start"], data["stop"])}</div>')
    parts.append(f'<h2 id="code">Code</h2><pre><code>{esc(data["code"])}</code></pre>')
    parts.append(f"<p><small>Generated by shoal on {esc(platform.node())}, pid {os.getpid()}.</small></p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
