"""The scheduler's dashboard: routes, and one update per interval pushed to every viewer.

`Dashboard(scheduler)` serves, on the scheduler's host (loopback by default):

* `/status`: a static page (`statics/`) that opens one WebSocket (`/ws`) and draws what
  it receives: task stream, progress per task prefix, memory and processing per worker;
* `/tasks` (the task stream with a time axis, a legend of prefixes, hover details and
  minutes of history) and `/system` (the scheduler's CPU, memory, network and open files
  over time): static pages drawing the same WebSocket updates;
* `/workers`, `/groups`, `/graph` (the tasks by depth, coloured by state) and `/profile`
  (the workers' profiler as an icicle graph, per task prefix, click to zoom): live too;
  a page asks its WebSocket for what it draws beside the common update
  (`ws?want=groups|graph|profile&prefix=...`), and each part is built once per tick for
  all the viewers asking (the graph by its changes: new tasks, then the states);
* `/info/main/workers.html`, `/info/worker/<address>.html`, `/info/task/<key>.html` (an
  erred task's traceback included): server-rendered, escaped HTML, no script;
* `/json/graph.json`, `/json/profile.json`, `/json/system.json`: the same data on request;
* `/json/counts.json`, `/json/identity.json`, `/json/index.html`, `/sitemap.json`;
* `/health` (`ok`) and `/metrics` (Prometheus text).

Cost model: the summary of the scheduler's state (`snapshot.summary`) is computed at
most once per `interval` whoever asks, and the pushed update is serialized once and
the same bytes written to every socket, so viewers add no scheduler work beyond a
socket write each. The ticker runs only while a viewer is connected, and waits at least
50 times as long as building the last update took, so even a huge graph costs the
scheduler at most ~2%. Task-stream records come from the workers' ring buffers
(`task_stream` requests with per-worker marks, so each record crosses once). The
scheduler process is sampled once a second (`shoal.system_monitor`, well under a
millisecond) so `/system` has ten minutes of history when first opened.

The charts are drawn by our own small scripts (canvas and SVG, no library): the pages work
offline and behind proxies, add no dependency and no download, and each script is a few
hundred lines that draw exactly what these pages need at 10,000 tasks.
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
from urllib.parse import parse_qs

from shoal import config
from shoal.dashboard import graphs, pages, snapshot
from shoal.dashboard.httpserver import WEBSOCKET, HTTPServer, Request, Response, WebSocket, ws_frame
from shoal.system_monitor import FIELDS as SYSTEM_FIELDS
from shoal.system_monitor import SystemMonitor
from shoal.utils import format_dashboard_link

logger = logging.getLogger("shoal.dashboard")

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_JSON = "application/json"
#: records of the task stream kept for viewers that connect later (`/tasks` shows minutes
#: of history from them: ~3 MB on the scheduler, ~1 MB sent once to a new viewer)
RECENT_STREAM = 10_000
#: at most this many (the newest) task-stream records per update: enough to draw a
#: thousand tasks a second; beyond that the page shows the newest and counts the rest
STREAM_PER_UPDATE = 500
#: what a page may ask its WebSocket for beside the update every viewer gets
TOPICS = frozenset({"graph", "groups", "profile"})
#: seconds between two fetches of the workers' profiles while a `/profile` page is open
PROFILE_EVERY = 2.0


class _GraphCache:
    """The graph `/graph` draws (`graphs.GraphView`), when it was last brought up to date
    and what that cost, and the changes not yet pushed to the viewers."""

    __slots__ = ("checked_at", "cost", "pending", "sent_states", "view")

    def __init__(self) -> None:
        self.view = graphs.GraphView()
        self.pending: list[dict] = []
        self.sent_states: dict = {}
        self.checked_at = -1e9
        self.cost = 0.0


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
        self.system = SystemMonitor(n=600)  # the scheduler process, once a second: 10 minutes
        self._sampler: asyncio.Task | None = None
        self._graph = _GraphCache()
        self._graph_json_cache: tuple[bytes | None, float, float] = (None, 0.0, 0.0)
        self._groups_cache: tuple[float, list | None] = (0.0, None)
        #: prefix (None: all tasks) -> (when fetched, pruned tree, seconds pruning took)
        self._profiles: dict[str | None, tuple[float, dict, float]] = {}
        #: viewer -> (the topics it asked for, the prefix of the profile it shows)
        self._asks: dict[WebSocket, tuple[frozenset[str], str | None]] = {}
        #: the scheduler loop's seconds the last build of each part took (the bench reads it)
        self.costs: dict[str, float] = {}
        routes = {
            "/": self._root,
            "/status": self._status,
            "/tasks": self._live_page("tasks", "Task stream"),
            "/system": self._live_page("system", "Scheduler system"),
            "/graph": self._live_page("graph", "Task graph"),
            "/profile": self._live_page("profile", "Profile"),
            "/groups": self._live_page("groups", "Task groups"),
            "/json/graph.json": self._graph_json,
            "/json/profile.json": self._profile_json,
            "/json/system.json": self._system_json,
            "/ws": lambda req: WEBSOCKET,
            "/workers": self._workers_live,
            "/info/main/workers.html": self._workers,
            "/favicon.ico": lambda req: Response((self._static / "favicon.svg").read_bytes(), _TYPES[".svg"]),
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
        self._sampler = asyncio.ensure_future(self._sample_system())

    async def _sample_system(self) -> None:
        while True:
            self.system.sample()
            await asyncio.sleep(1.0)  # psutil has no event to wait on: sample

    async def close(self) -> None:
        for ws in list(self.viewers):
            ws.close()
        self.viewers.clear()
        self._asks.clear()
        for task in (self._ticker, self._sampler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._ticker = self._sampler = None
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
            self.costs["summary"] = time.monotonic() - now
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

    def groups(self) -> list[dict]:
        """`graphs.groups` of the scheduler, recomputed at most once per interval."""
        now = time.monotonic()
        at, value = self._groups_cache
        if value is None or now - at >= self.interval:
            started = time.monotonic()
            value = graphs.groups(self.scheduler.state)
            self.costs["groups"] = time.monotonic() - started
            self._groups_cache = (now, value)
        return value

    def graph(self) -> dict:
        """The task graph as the pages draw it (`graphs.GraphView.body`), brought up to date
        at most once per interval, and no more often than 50 times what the last change
        took (a new 10,000-task graph takes ~0.15 s: then not again for 7 s). The changes
        wait in `pending` for the next push: new tasks appended, or a new graph."""
        g = self._graph
        now = time.monotonic()
        if g.view.body and now - g.checked_at < max(self.interval, 50 * g.cost):
            return g.view.body
        started = time.monotonic()
        change = g.view.update(self.scheduler.state)
        g.cost = time.monotonic() - started
        g.checked_at = now
        if change is not None:
            self.costs["graph" if change["type"] == "graph" else "graph_add"] = g.cost
            if not any("graph" in wants for wants, _ in self._asks.values()):
                g.pending = []  # no one to tell: a new viewer gets the whole body
            elif change["type"] == "graph":
                g.pending = [change]  # supersedes the changes before it
            else:
                g.pending.append(change)
        return g.view.body

    def graph_states(self) -> dict:
        """The drawn graph's tasks' states now, as indexes into `snapshot.STATES`."""
        self.graph()
        started = time.monotonic()
        states = self._graph.view.states(self.scheduler.state)
        self.costs["graph_states"] = time.monotonic() - started
        return {"version": self._graph.view.version, "states": states}

    def _asked(self) -> tuple[set[str], set[str | None]]:
        """The topics the viewers asked for, and the prefixes of the profiles due now."""
        topics: set[str] = set()
        prefixes: set[str | None] = set()
        now = time.monotonic()
        for wants, prefix in self._asks.values():
            topics |= wants
            if "profile" in wants:
                at, _, cost = self._profiles.get(prefix, (-1e9, None, 0.0))
                if now - at >= max(PROFILE_EVERY, 50 * cost):
                    prefixes.add(prefix)
        return topics, prefixes

    async def _fetch_profiles(self, prefixes: set[str | None]) -> dict[str | None, dict]:
        """The workers' profiles of `prefixes` (None: all tasks), pruned; one request each."""
        out: dict[str | None, dict] = {}
        for prefix in prefixes:
            try:
                tree = await asyncio.wait_for(self.scheduler.profiling.profile(None, key=prefix), 10)
            except (TimeoutError, OSError) as e:
                logger.info("dashboard: no profile this round: %s", e)
                continue
            started = time.monotonic()
            out[prefix] = graphs.prune_profile(tree)
            self._profiles[prefix] = (time.monotonic(), out[prefix], time.monotonic() - started)
        return out

    def _send(self, message: dict, to: Any = None) -> None:
        """`message` encoded once, the same bytes to every viewer (or to those `to(wants,
        prefix)` accepts)."""
        frame = ws_frame(json.dumps(message, separators=(",", ":"), default=str).encode())
        for ws in list(self.viewers):
            if to is not None and not to(*self._asks.get(ws, (frozenset(), None))):
                continue
            ws.send_frame(frame)
            if ws.closed:
                self._closed(ws)

    async def _tick(self) -> None:
        try:
            while self.viewers:
                topics, prefixes = self._asked()
                reply, profiles = await asyncio.gather(self._fetch_stream(), self._fetch_profiles(prefixes))
                if not self.viewers:
                    break
                started = time.monotonic()
                stream, skipped = self._take_stream(reply)
                system = self.system.history[-1] if self.system.history else None
                self._send({"type": "update", "time": time.time(), "summary": self.summary(), "stream": stream,
                            "skipped": skipped, "system": system})  # fmt: skip
                if "groups" in topics:
                    self._send({"type": "groups", "groups": self.groups()}, lambda w, p: "groups" in w)
                paced = 0.0  # the graph's changes keep their own pace (`graph`): not the updates'
                if "graph" in topics:
                    t0 = time.monotonic()
                    self.graph()
                    changes, self._graph.pending = self._graph.pending, []
                    for change in changes:
                        self._send(change, lambda w, p: "graph" in w)
                    paced = time.monotonic() - t0
                    if changes:
                        self._graph.cost = max(self._graph.cost, paced)  # its pace counts the encoding too
                    states = self.graph_states()
                    if changes or states != self._graph.sent_states:  # nothing moved: nothing sent
                        self._send({"type": "graph-states", **states}, lambda w, p: "graph" in w)
                        self._graph.sent_states = states
                for prefix, tree in profiles.items():
                    message = {"type": "profile", "prefix": prefix, "tree": tree, "prefixes": self._prefixes()}
                    self._send(message, lambda w, p, prefix=prefix: "profile" in w and p == prefix)
                cost = time.monotonic() - started
                self.busy += cost
                self.updates += 1
                await asyncio.sleep(max(self.interval, 50 * (cost - paced)))
        finally:
            self._ticker = None

    def _prefixes(self) -> list[str]:
        return sorted(self.summary()["prefixes"])

    def _opened(self, ws: WebSocket) -> None:
        """A new viewer: the history it missed, and what it asked for (`ws?want=graph,groups,
        profile&prefix=...`) as the other viewers last got it."""
        query = parse_qs(ws.query)
        wants = frozenset(t for v in query.get("want", ()) for t in v.split(",") if t in TOPICS)
        prefix = query.get("prefix", [None])[0] or None
        first: dict[str, Any] = {"type": "init", "time": time.time(), "interval": self.interval,
                                 "stream": list(self._recent), "system_history": list(self.system.history)}  # fmt: skip
        if "graph" in wants:
            first["graph"] = self.graph()
            first["graph_states"] = self.graph_states()
        if "groups" in wants:
            first["groups"] = self.groups()
        if "profile" in wants and prefix in self._profiles:
            first["profile"] = {"prefix": prefix, "tree": self._profiles[prefix][1], "prefixes": self._prefixes()}
        ws.send_frame(ws_frame(json.dumps(first, separators=(",", ":"), default=str).encode()))
        self.viewers.add(ws)
        self._asks[ws] = (wants, prefix)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    def _closed(self, ws: WebSocket) -> None:
        self.viewers.discard(ws)
        self._asks.pop(ws, None)
        if self._graph.view.body and not any("graph" in wants for wants, _ in self._asks.values()):
            self._graph = _GraphCache()  # the last /graph viewer left: hold no task of the scheduler's
        if self._profiles and not any("profile" in wants for wants, _ in self._asks.values()):
            self._profiles.clear()

    # ------------------------------------------------------------------ routes

    def _root(self, req: Request) -> Response:
        return Response("", status=301, headers={"Location": "status"})

    def _status(self, req: Request) -> Response:
        return self._live_page("status", "Status", "status")(req)

    def _live_page(self, name: str, title: str, main_class: str = "") -> Any:
        """A page drawn by `statics/<name>.js` (after `common.js`) in the body of
        `statics/<name>.part.html`."""

        def serve(req: Request) -> Response:
            root = pages.root_of(req.raw_path)
            body = (self._static / f"{name}.part.html").read_text()
            return Response(pages.page(title, body, root, ("common.js", f"{name}.js"), main_class))

        return serve

    def _graph_json(self, req: Request) -> Response:
        """The task graph as `/graph` draws it, with the tasks' states of now: the live
        one while a `/graph` page is open, else built afresh at most once per 50 times what
        building it took (2 s at least), the same bytes meanwhile."""
        if not any("graph" in wants for wants, _ in self._asks.values()):
            now = time.monotonic()
            body, at, cost = self._graph_json_cache
            if body is None or now - at >= max(2.0, 50 * cost):
                started = time.monotonic()
                body = json.dumps(graphs.graph_json(self.scheduler.state), separators=(",", ":")).encode()
                cost = time.monotonic() - started
                self.busy += cost
                self._graph_json_cache = (body, now, cost)
            return Response(body, _JSON)
        live = self.graph()
        states = self.graph_states()["states"]
        names = snapshot.STATES
        nodes = [[k, p, names[i] if i >= 0 else "forgotten", d] for (k, p, _, d), i in zip(live["nodes"], states)]
        return Response(json.dumps({**live, "nodes": nodes}, separators=(",", ":")), _JSON)

    def _system_json(self, req: Request) -> Response:
        return Response(json.dumps({"fields": list(SYSTEM_FIELDS), "samples": list(self.system.history)}), _JSON)

    async def _profile_json(self, req: Request) -> Response:
        """The workers' task-thread profile (of one prefix with `?prefix=`), pruned to
        what can be drawn, and the prefixes there are."""
        prefix = parse_qs(req.query).get("prefix", [None])[0] or None
        try:
            tree = await asyncio.wait_for(self.scheduler.profiling.profile(None, key=prefix), 10)
        except (TimeoutError, OSError) as e:
            return Response(json.dumps({"error": f"the workers did not send their profiles: {e}"}), _JSON, 503)
        prefixes = sorted({ts.prefix for ts in self.scheduler.state.tasks.values()})
        body = {"prefix": prefix, "prefixes": prefixes, "tree": graphs.prune_profile(tree)}
        return Response(json.dumps(body, separators=(",", ":"), default=str), _JSON)

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

    def _workers_live(self, req: Request) -> Response:
        """`/workers`: the table as of now (readable without scripts), redrawn by
        `workers.js` from every pushed update."""
        root = pages.root_of(req.raw_path)
        body = f'<div id="workers-live">{pages.workers_table(self.summary()["workers"], root)}</div>'
        return Response(pages.page("Workers", body, root, ("common.js", "workers.js")))

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
        body = pages.task_info(ts, root, shorten_patterns=config.get("admin.traceback.shorten") or [])
        return Response(pages.page(f"Task {text}", body, root))

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
