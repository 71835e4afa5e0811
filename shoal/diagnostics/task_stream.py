"""The task stream seen from the client: `get_task_stream` and its HTML timeline.

Each worker keeps its own bounded ring buffer of records (`WorkerState.task_stream`,
`shoal.worker.task-stream-length` records); nothing per task is sent anywhere. The
scheduler fetches the buffers on demand (`get_task_stream` request) and merges them.
A record is a dict::

    {"key", "worker", "thread", "status": "OK" | "error",
     "startstops": [{"action": "transfer", "start", "stop", "source"}, ...,
                    {"action": "compute", "start", "stop"}],
     "nbytes", "type", "typename"}                      # status "OK"
     "exception_text", "traceback_text"                  # status "error"

Times are wall-clock seconds (`time.time()` on the worker). `TaskStreamFigure` renders
records as one self-contained HTML page (inline SVG, no scripts, no network), with every
user string escaped.
"""

from __future__ import annotations

import datetime
import html
import time
import warnings
from typing import Any

from dask.utils import parse_timedelta

from shoal.diagnostics.svg_page import SVGFigure, hue
from shoal.utils import key_prefix

__all__ = ["TaskStreamFigure", "get_task_stream"]


def parse_time(t: Any) -> float | None:
    """None, epoch seconds, a `datetime`, or a duration before now (``"60s"``)."""
    if t is None:
        return None
    if isinstance(t, str):
        return time.time() - float(parse_timedelta(t, default="s"))
    if isinstance(t, datetime.datetime):
        return t.timestamp()
    return float(t)


def warn_if_dropped(dropped: dict, stacklevel: int = 2) -> None:
    """Say that the records are incomplete when workers' ring buffers had dropped some of
    the requested range (`dropped`: {worker: number of records}); `stacklevel` counts
    from the caller of this function, as `warnings.warn` does."""
    if not dropped:
        return
    from shoal import config

    n = sum(dropped.values())
    where = ", ".join(f"{w}: {k}" for w, k in sorted(dropped.items()))
    warnings.warn(
        f"the task stream is incomplete: {n} records of the requested range were no longer held"
        f" ({where}); each worker keeps its newest {config.get('worker.task-stream-length')}"
        " (config shoal.worker.task-stream-length)",
        stacklevel=stacklevel + 1,
    )


def normalize_records(records: Any) -> list[dict]:
    """Wire records (tuples where lists were sent) as plain dicts and lists."""
    out = []
    for r in records:
        r = dict(r)
        r["startstops"] = [dict(ss) for ss in r["startstops"]]
        out.append(r)
    return out


async def fetch_task_stream(
    client: Any, start: Any = None, stop: Any = None, count: int | None = None, since: dict | None = None
) -> dict:
    """`{"counts": {worker: records so far}, "records": [...], "dropped": {worker: n}}`
    from `client`'s scheduler (on the client's loop; what the client sent before goes
    first). `since` (earlier `counts`) keeps only newer records."""
    assert client.scheduler_comm is not None
    client.outbox.flush()
    reply = await client.scheduler_comm.request(
        "get_task_stream", start=parse_time(start), stop=parse_time(stop), count=count, since=since
    )
    return {
        "counts": dict(reply["counts"]), "records": normalize_records(reply["records"]),
        "dropped": dict(reply.get("dropped") or {}),
    }  # fmt: skip


class get_task_stream:
    """Collect the task stream of what runs inside a ``with`` (or ``async with``) block.

    >>> with get_task_stream() as ts:  # doctest: +SKIP
    ...     x.compute()
    >>> ts.data  # doctest: +SKIP
    [{'key': ..., 'startstops': [...], ...}, ...]

    Only tasks that finished inside the block are included (each worker's record index
    is noted on entry, not a wall-clock time); a warning says so when a worker's ring
    buffer (`shoal.worker.task-stream-length`) dropped some of them. With `plot`,
    `figure` holds the timeline; `plot="save"` also writes it to `filename`.
    """

    def __init__(self, client: Any = None, plot: Any = False, filename: str = "task-stream.html"):
        self.client = client
        self.plot = plot
        self.filename = filename
        self.data: list[dict] = []
        self.figure: TaskStreamFigure | None = None
        self._since: dict | None = None

    def _client(self) -> Any:
        if self.client is None:
            from shoal.client.client import default_client

            self.client = default_client()
        return self.client

    def _finish(self, reply: dict) -> None:
        warn_if_dropped(reply["dropped"], stacklevel=3)  # the line of the `with` block
        self.data.extend(reply["records"])
        if self.plot:
            self.figure = TaskStreamFigure(self.data)
            if self.plot == "save":
                self.figure.save(self.filename)

    def __enter__(self) -> get_task_stream:
        client = self._client()
        self._since = client.sync(fetch_task_stream, client, count=0, asynchronous=False)["counts"]
        return self

    def __exit__(self, *exc: Any) -> None:
        client = self._client()
        self._finish(client.sync(fetch_task_stream, client, since=self._since, asynchronous=False))

    async def __aenter__(self) -> get_task_stream:
        self._since = (await fetch_task_stream(self._client(), count=0))["counts"]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._finish(await fetch_task_stream(self._client(), since=self._since))


# ---------------------------------------------------------------------------- the timeline

_ROW = 18
_LEFT = 230
_WIDTH = 1000
_TOP = 30
_ACTION_COLORS = {"transfer": "#d62728", "disk-read": "#ff7f0e", "disk-write": "#ff7f0e", "deserialize": "#888888"}
_ERROR_COLOR = "#000000"


def _prefix_color(prefix: str) -> str:
    return hue(prefix)


class TaskStreamFigure(SVGFigure):
    """A task-stream timeline: one row per worker thread, one bar per compute, transfer or
    disk action (per-prefix colours, red transfers, black errors). `html` is a complete,
    self-contained page; `save(filename)` writes it; notebooks render it inline."""

    title = "Task Stream"
    css = " svg text{font-size:11px}"

    def __init__(self, records: list[dict]):
        self.records = records
        self.svg = render_svg(records)

    @property
    def caption(self) -> str:
        n = len(self.records)
        return f"{n} task{'s' if n != 1 else ''}"

    def __repr__(self) -> str:
        return f"<TaskStreamFigure: {len(self.records)} tasks>"


def render_svg(records: list[dict]) -> str:
    esc = html.escape
    rows: dict[tuple, int] = {}
    t0, t1 = float("inf"), float("-inf")
    for r in records:
        rows.setdefault((str(r.get("worker")), r.get("thread")), 0)
        for ss in r["startstops"]:
            t0, t1 = min(t0, ss["start"]), max(t1, ss["stop"])
    for i, row in enumerate(sorted(rows, key=lambda x: (x[0], str(x[1])))):
        rows[row] = i
    if not records:
        t0, t1 = 0.0, 1.0
    span = max(t1 - t0, 1e-6)
    height = _TOP + _ROW * max(len(rows), 1) + 40
    svg_open = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LEFT + _WIDTH + 20}" height="{height}" '
        'role="img" aria-label="task stream">'
    )
    out = [svg_open]
    for (worker, thread), i in rows.items():
        y = _TOP + i * _ROW
        out.append(f'<text x="4" y="{y + 13}">{esc(f"{worker} [{thread}]")}</text>')
    prefixes: dict[str, str] = {}
    for r in records:
        y = _TOP + rows[(str(r.get("worker")), r.get("thread"))] * _ROW
        prefix = key_prefix(r["key"])
        for ss in r["startstops"]:
            action = ss.get("action", "compute")
            if action == "compute":
                if r.get("status") == "error":
                    color = _ERROR_COLOR
                else:
                    color = prefixes.get(prefix) or prefixes.setdefault(prefix, _prefix_color(prefix))
            else:
                color = _ACTION_COLORS.get(action, "#888888")
            x = _LEFT + (ss["start"] - t0) / span * _WIDTH
            w = max((ss["stop"] - ss["start"]) / span * _WIDTH, 0.5)
            label = f"{r['key']} {action} {ss['stop'] - ss['start']:.4f} s"
            if "source" in ss:
                label += f" from {ss['source']}"
            if r.get("status") == "error":
                label += f" (error: {r.get('exception_text', '')})"
            out.append(
                f'<rect x="{x:.2f}" y="{y + 2}" width="{w:.2f}" height="{_ROW - 4}" fill="{color}">'
                f"<title>{esc(label)}</title></rect>"
            )
    axis_y = _TOP + _ROW * max(len(rows), 1) + 14
    for k in range(6):
        x = _LEFT + k * _WIDTH / 5
        out.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle">{span * k / 5:.3g} s</text>')
    lx = _LEFT
    for prefix, color in list(prefixes.items())[:12]:
        out.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="15">{esc(prefix)}</text>')
        lx += 20 + 7 * min(len(prefix), 24)
    out.append("</svg>")
    return "".join(out)


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'TaskStreamPlugin': 'shoal records the task stream on the workers; use Client.get_task_stream() or `with get_task_stream()`',
        'color_of_message': "an internal of distributed's dashboard",
        'rectangles': "an internal of distributed's dashboard; TaskStreamFigure draws the stream",
    },
)
