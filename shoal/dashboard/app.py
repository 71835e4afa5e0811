"""The scheduler's dashboard: routes, and one update per interval pushed to every viewer.

`Dashboard(scheduler)` serves, on the scheduler's host (loopback by default):

* `/status`: a static page (`statics/`) that opens one WebSocket (`/ws`) and draws what
  it receives: task stream, progress per task prefix, memory and processing per worker;
* `/workers`, `/info/main/workers.html`, `/info/worker/<address>.html`,
  `/info/task/<key>.html`: server-rendered, escaped HTML;
* `/json/counts.json`, `/json/identity.json`, `/json/index.html`, `/sitemap.json`;
* `/health` (`ok`) and `/metrics` (Prometheus text).

Cost model: the summary of the scheduler's state (`snapshot.summary`) is computed at
most once per `interval` whoever asks, and the pushed update is serialized once and
the same bytes written to every socket, so viewers add no scheduler work beyond a
socket write each. The ticker runs only while a viewer is connected, and waits at least
50 times as long as building the last update took, so even a huge graph costs the
scheduler at most ~2%. Task-stream records come from the workers' ring buffers
(`task_stream` requests with per-worker marks, so each record crosses once).
"""

from __future__ import annotations

import ast
import asyncio
import errno
import json
import logging
import os
import time
from collections import deque
from importlib import resources
from typing import Any

from shoal import config
from shoal.dashboard import pages, snapshot
from shoal.dashboard.httpserver import WEBSOCKET, HTTPServer, Request, Response, WebSocket, ws_frame
from shoal.utils import format_dashboard_link

logger = logging.getLogger("shoal.dashboard")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_JSON = "application/json"
#: records of the task stream kept for viewers that connect later
RECENT_STREAM = 2000
#: at most this many (the newest) task-stream records per update: enough to draw a
#: thousand tasks a second; beyond that the page shows the newest and counts the rest
STREAM_PER_UPDATE = 500


def parse_dashboard_address(address: Any, default_host: str) -> tuple[str, int] | None:
    """`":8787"`, `"host:port"`, `8787`, `"0"` -> (host, port); None/False/"" -> None."""
    if address is None or address is False or address == "":
        return None
    if address is True:
        address = ":8787"
    if isinstance(address, int):
        return default_host, address
    text = str(address)
    if "://" in text:
        text = text.split("://", 1)[1]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"dashboard_address {address!r}: expected ':PORT' or 'HOST:PORT'") from None


class Dashboard:
    def __init__(self, scheduler: Any, interval: float | None = None):
        self.scheduler = scheduler
        self.interval = interval if interval is not None else config.get_timedelta("dashboard.interval")
        self.namespace = str(config.get("dashboard.prometheus.namespace"))
        self.host = ""
        self.port = 0
        self.viewers: set[WebSocket] = set()
        self._summary: dict | None = None
        self._summary_at = -1e9
        self._ticker: asyncio.Task | None = None
        self._marks: dict[str, int] = {}
        self._recent: deque[list] = deque(maxlen=RECENT_STREAM)
        #: how many updates were pushed, and the scheduler loop's seconds spent building
        #: and sending them (tests and the bench read these)
        self.updates = 0
        self.busy = 0.0
        self._static = resources.files("shoal.dashboard") / "static"
        routes = {
            "/": self._root,
            "/status": self._status,
            "/ws": lambda req: WEBSOCKET,
            "/workers": self._workers,
            "/info/main/workers.html": self._workers,
            "/health": lambda req: Response("ok", "text/plain; charset=utf-8"),
            "/metrics": self._metrics,
            "/json/counts.json": self._counts,
            "/json/identity.json": self._identity,
            "/json/index.html": self._json_index,
            "/sitemap.json": self._sitemap,
        }
        prefixes = {"/statics/": self._statics, "/info/worker/": self._worker_info, "/info/task/": self._task_info}
        self.routes = routes
        self.http = HTTPServer(routes, prefixes, self._opened, self._closed)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> None:
        try:
            self.port = await self.http.start(host, port)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or port == 0:
                raise
            self.port = await self.http.start(host, 0)
            logger.warning("Port %d is already in use; the dashboard is at %s instead", port, self._link(host))
        self.host = host
        logger.info("Dashboard at %s", self.link)

    async def close(self) -> None:
        for ws in list(self.viewers):
            ws.close()
        self.viewers.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await self.http.close()

    def _link(self, host: str) -> str:
        return format_dashboard_link(host, self.port)

    @property
    def link(self) -> str:
        return self._link(self.host)

    # ------------------------------------------------------------------ data

    def summary(self) -> dict:
        """`snapshot.summary` of the scheduler, recomputed at most once per interval."""
        now = time.monotonic()
        if self._summary is None or now - self._summary_at >= self.interval:
            sched = self.scheduler
            metrics = {ws.address: sched.metrics_of(ws) for ws in sched.state.workers.values()}
            self._summary = snapshot.summary(sched.state, metrics)
            self._summary_at = now
        return self._summary

    async def _fetch_stream(self) -> dict | None:
        """Task-stream records added since the last update, the newest
        `STREAM_PER_UPDATE` of them (the workers' `task_stream` reply, merged)."""
        try:
            return await asyncio.wait_for(
                self.scheduler.get_task_stream(count=STREAM_PER_UPDATE, since=self._marks),
                max(2.0, 4 * self.interval),
            )
        except (TimeoutError, OSError) as e:
            logger.info("dashboard: no task stream this round: %s", e)
            return None

    def _take_stream(self, reply: dict | None) -> tuple[list[list], int]:
        """The records to draw, and how many more were added and not sent."""
        if reply is None:
            return [], 0
        marks, counts = self._marks, reply["counts"]
        added = sum(n - marks.get(w, n) for w, n in counts.items())
        self._marks = counts
        records = snapshot.compact_stream(reply["records"])
        self._recent.extend(records)
        return records, max(0, added - len(records))

    async def _tick(self) -> None:
        try:
            while self.viewers:
                reply = await self._fetch_stream()
                if not self.viewers:
                    break
                started = time.monotonic()
                stream, skipped = self._take_stream(reply)
                update = {"type": "update", "time": time.time(), "summary": self.summary(), "stream": stream,
                          "skipped": skipped}  # fmt: skip
                frame = ws_frame(json.dumps(update, separators=(",", ":"), default=str).encode())
                for ws in list(self.viewers):
                    ws.send_frame(frame)
                    if ws.closed:
                        self.viewers.discard(ws)
                cost = time.monotonic() - started
                self.busy += cost
                self.updates += 1
                await asyncio.sleep(max(self.interval, 50 * cost))
        finally:
            self._ticker = None

    def _opened(self, ws: WebSocket) -> None:
        first = {"type": "init", "time": time.time(), "interval": self.interval, "stream": list(self._recent)}
        ws.send_frame(ws_frame(json.dumps(first, separators=(",", ":"), default=str).encode()))
        self.viewers.add(ws)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    def _closed(self, ws: WebSocket) -> None:
        self.viewers.discard(ws)

    # ------------------------------------------------------------------ routes

    def _root(self, req: Request) -> Response:
        return Response("", status=301, headers={"Location": "status"})

    def _status(self, req: Request) -> Response:
        return Response((self._static / "status.html").read_bytes())

    def _statics(self, req: Request) -> Response:
        name = req.path[len("/statics/") :]
        ext = os.path.splitext(name)[1]
        if "/" in name or name.startswith(".") or ext not in _TYPES:
            return Response("not found", "text/plain", 404)
        f = self._static / name
        if not f.is_file():
            return Response("not found", "text/plain", 404)
        return Response(f.read_bytes(), _TYPES[ext])

    def _workers(self, req: Request) -> Response:
        root = pages.root_of(req.raw_path)
        body = pages.workers_table(self.summary()["workers"], root)
        return Response(pages.page("Workers", body, root))

    def _worker_info(self, req: Request) -> Response:
        root = pages.root_of(req.raw_path)
        address = req.path[len("/info/worker/") :].removesuffix(".html")
        ws = self.scheduler.state.workers.get(address)
        if ws is None:
            return Response(pages.page("Unknown worker", f"<p>No worker {pages.escape(address)}.</p>", root), status=404)
        return Response(pages.page(f"Worker {address}", pages.worker_info(ws, root), root))

    def _task_info(self, req: Request) -> Response:
        root = pages.root_of(req.raw_path)
        text = req.path[len("/info/task/") :].removesuffix(".html")
        tasks = self.scheduler.state.tasks
        ts = tasks.get(text)
        if ts is None and text.startswith("("):
            try:
                ts = tasks.get(ast.literal_eval(text))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                ts = None
        if ts is None:
            body = f"<p>The scheduler knows no task {pages.escape(text)} (never submitted, or forgotten).</p>"
            return Response(pages.page("Unknown task", body, root), status=404)
        return Response(pages.page(f"Task {text}", pages.task_info(ts, root), root))

    def _metrics(self, req: Request) -> Response:
        return Response(snapshot.prometheus(self.summary(), self.namespace), "text/plain; version=0.0.4; charset=utf-8")

    def _counts(self, req: Request) -> Response:
        return Response(json.dumps(snapshot.counts_json(self.summary())), _JSON)

    def _identity(self, req: Request) -> Response:
        return Response(json.dumps(self.scheduler.identity(), default=str), _JSON)

    def _json_index(self, req: Request) -> Response:
        items = "".join(f'<li><a href="{p}">{p}</a></li>' for p in ("counts.json", "identity.json"))
        return Response(pages.page("JSON", f"<ul>{items}</ul>", "../"))

    def _sitemap(self, req: Request) -> Response:
        paths = sorted(p for p in self.routes if p != "/ws")
        return Response(json.dumps({"paths": paths}), _JSON)
