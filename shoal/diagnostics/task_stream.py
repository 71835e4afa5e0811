"""The task stream seen from the client: `get_task_stream` and its HTML timeline.

Each worker keeps its own bounded ring buffer of records (`WorkerState.task_stream`,
`shoal.worker.task-stream-length` records); nothing per task is sent anywhere. The
scheduler fetches the buffers on demand (`get_task_stream` request) and merges them.
A record is a dict::

    {"key", "worker", "thread", "status": "OK" | "error", "stimulus_id",
     "metadata": {...},   # what the task (or a worker plugin) put in its task's `metadata`
     "startstops": [{"action": "transfer", "start", "stop", "source", "nbytes"}, ...,
                    {"action": "compute", "start", "stop"}],
     "nbytes", "type", "typename"}                      # status "OK"
     "exception_text", "traceback_text"                  # status "error"

Times are wall-clock seconds (`time.time()` on the worker). `TaskStreamFigure` renders
records as one self-contained HTML page (inline SVG, no scripts, no network), with every
user string escaped.

`TaskStreamPlugin` is distributed's scheduler plugin of the same name, opt in here: once
registered (``client.register_plugin(TaskStreamPlugin())``) it copies the workers'
records into its own bounded `buffer` on the scheduler shortly after each task ends (a
finished task's transition starts one pull from the workers, and the pulls never
overlap, so a burst of tasks costs one pull), so the stream outlives the workers that
left and `collect` / `rectangles` answer on the scheduler as distributed's do.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import html
import logging
import time
import warnings
from typing import Any

from dask.utils import format_time, parse_timedelta

from shoal.diagnostics.plugin import SchedulerPlugin
from shoal.diagnostics.svg_page import SVGFigure, hue
from shoal.utils import key_prefix

__all__ = ["TaskStreamFigure", "TaskStreamPlugin", "color_of_message", "get_task_stream", "rectangles"]

logger = logging.getLogger("shoal.diagnostics")


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


# ---------------------------------------------------------------------------- the scheduler plugin

#: distributed's effective default length (`dashboard.tasks.task-stream-length`)
DEFAULT_MAXLEN = 100_000


class TaskStreamPlugin(SchedulerPlugin):
    """Collect task-stream records on the scheduler (see the module docstring).

    ``TaskStreamPlugin(scheduler=None, maxlen=100_000)``: `buffer` holds the newest
    `maxlen` records in the order they arrived, `index` counts every record ever added.
    Register it with ``client.register_plugin(TaskStreamPlugin())`` (or, on the scheduler,
    ``await scheduler.plugin_host.add(plugin, plugin.name)``). `collect(start, stop,
    count, start_index)` and `rectangles(istart, istop, workers, start_boundary)` read the
    buffer as distributed's do. `await plugin.flush()` returns once every task finished
    so far is in the buffer.
    """

    name = "task-stream"

    def __init__(self, scheduler: Any = None, maxlen: int | None = None):
        self.scheduler = scheduler
        self.buffer: collections.deque = collections.deque(maxlen=DEFAULT_MAXLEN if maxlen is None else int(maxlen))
        self.index = 0
        #: records the workers' ring buffers lost before they were pulled, by worker
        self.dropped: dict[str, int] = {}
        self._marks: dict[str, int] = {}
        self._wanted = 0  # finished tasks seen
        self._pulled_for = 0  # of those, how many a finished pull covers
        self._pull: asyncio.Task | None = None

    def __getstate__(self) -> dict:  # registered through a client: pickled without its scheduler
        state = dict(self.__dict__)
        state.update(scheduler=None, _pull=None)
        return state

    def start(self, scheduler: Any) -> None:  # type: ignore[override]
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish in ("memory", "erred"):
            self._wanted += 1
            if self._pull is None or self._pull.done():
                self._pull = asyncio.ensure_future(self._pull_loop())

    async def _pull_loop(self) -> None:
        while self._pulled_for < self._wanted and self.scheduler is not None:
            target = self._wanted
            try:
                reply = await self.scheduler.get_task_stream(since=dict(self._marks))
            except Exception as e:  # noqa: BLE001 - a closing scheduler; tried again on the next task
                logger.info("task-stream plugin: could not pull records: %s", e)
                return
            self._marks.update(reply["counts"])
            for worker, n in reply["dropped"].items():
                if n:
                    self.dropped[worker] = self.dropped.get(worker, 0) + n
                    logger.warning("task-stream plugin: %d records of %s were gone before they were pulled", n, worker)
            self.buffer.extend(reply["records"])
            self.index += len(reply["records"])
            self._pulled_for = target

    async def flush(self) -> None:
        """Wait until the records of every task finished so far are in `buffer`;
        `RuntimeError` if the workers could not be asked."""
        while self._pulled_for < self._wanted and self.scheduler is not None:
            before = self._pulled_for
            if self._pull is None or self._pull.done():
                self._pull = asyncio.ensure_future(self._pull_loop())
            await asyncio.shield(self._pull)
            if self._pulled_for == before:
                raise RuntimeError("task-stream plugin: the workers' records could not be pulled (see the log)")

    async def close(self) -> None:  # type: ignore[override]
        pull, self._pull = self._pull, None
        if pull is not None and not pull.done():
            pull.cancel()
            await asyncio.gather(pull, return_exceptions=True)

    def collect(
        self, start: Any = None, stop: Any = None, count: int | None = None, start_index: int | None = None
    ) -> list[dict]:
        """Records from the buffer: those with index >= `start_index`; else those whose
        compute ended in [`start`, `stop`] (epoch seconds or a duration before now such as
        ``"60s"``), at most `count` (the newest, or the first `count` after `start`)."""
        buffer = self.buffer
        if start_index is not None:
            first = max(0, min(start_index - (self.index - len(buffer)), len(buffer)))
            return [buffer[i] for i in range(first, len(buffer))]

        def position(t: float) -> int:
            lo, hi = 0, len(buffer)
            while lo < hi:
                mid = (lo + hi) // 2
                if max(ss["stop"] for ss in buffer[mid]["startstops"]) < t:
                    lo = mid + 1
                else:
                    hi = mid
            return lo

        i = None if start is None else position(parse_time(start))  # type: ignore[arg-type]
        j = None if stop is None else position(parse_time(stop))  # type: ignore[arg-type]
        if count is not None:
            if i is None and j is None:
                j = len(buffer)
                i = j - count
            elif i is None:
                i = j - count  # type: ignore[operator]
            elif j is None:
                j = i + count
        i = max(0, i or 0)
        j = min(len(buffer) if j is None else j, len(buffer))
        return [buffer[k] for k in range(i, j)]

    def rectangles(self, istart: int | None, istop: int | None = None, workers: dict | None = None,
                   start_boundary: float = 0) -> dict:  # fmt: skip
        """The bars of records `istart` to `istop` (indices as in `index`), as `rectangles`."""
        offset = self.index - len(self.buffer)
        if istop is None:
            istop = self.index
        first = max(0, (istart or 0) - offset)
        msgs = [self.buffer[i] for i in range(first, max(first, istop - offset))]
        return rectangles(msgs, workers=workers, start_boundary=start_boundary)


_BAR_COLORS = {"transfer": "red", "disk-write": "orange", "disk-read": "orange", "deserialize": "gray"}
_BAR_ALPHAS = {"transfer": 0.4, "compute": 1, "deserialize": 0.4, "disk-write": 0.4, "disk-read": 0.4}


def color_of_message(msg: dict) -> str:
    """The colour of a record's compute bar: one per task prefix, black for an error."""
    if msg.get("status") != "OK":
        return "black"
    return hue(key_prefix(msg["key"]))


def rectangles(msgs: Any, workers: dict | None = None, start_boundary: float = 0) -> dict:
    """The bars of task-stream records as columns (distributed's layout): `start` (the
    bar's middle) and `duration` in milliseconds, `duration_text`, `key`, `name` (the
    prefix, with the action before it for other than compute), `color`, `alpha`,
    `worker`, `worker_thread` and its row `y` (`workers` maps worker-thread to row and
    is extended); actions starting before `start_boundary` are left out."""
    if workers is None:
        workers = {}
    columns: dict[str, list] = {c: [] for c in (
        "start", "duration", "duration_text", "key", "name", "color", "alpha", "worker", "worker_thread", "y",
    )}  # fmt: skip
    for msg in msgs:
        if "worker" not in msg or "thread" not in msg:
            continue
        key = msg["key"]
        name = key_prefix(key)
        row = f"{msg['worker']}-{msg['thread']}"
        if row not in workers:
            workers[row] = len(workers) / 2
        for ss in msg.get("startstops", ()):
            if ss["start"] < start_boundary:
                continue
            action = ss.get("action", "compute")
            columns["start"].append((ss["start"] + ss["stop"]) / 2 * 1000)
            columns["duration"].append(1000 * (ss["stop"] - ss["start"]))
            columns["duration_text"].append(format_time(ss["stop"] - ss["start"]))
            columns["key"].append(key)
            columns["name"].append(name if action == "compute" else f"{action}-{name}")
            columns["color"].append(color_of_message(msg) if action == "compute" else _BAR_COLORS.get(action, "gray"))
            columns["alpha"].append(_BAR_ALPHAS.get(action, 0.4))
            columns["worker"].append(msg["worker"])
            columns["worker_thread"].append(row)
            columns["y"].append(workers[row])
    return columns
