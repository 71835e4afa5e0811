"""The scheduler's dashboard over real HTTP and WebSocket connections: routes, escaping,
one update per interval for all viewers, nothing computed without viewers."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import struct
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
from task_functions import inc

from shoal import Client, LocalCluster, _loop
from shoal.worker.server import Worker

EVIL_KEY = "<script>alert(1)</script>"
EVIL_NAME = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def dash_cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cl:
        yield cl


@pytest.fixture
def dclient(dash_cluster):
    with Client(dash_cluster) as c:
        yield c


def base(cluster) -> str:
    return cluster.dashboard_link.rsplit("/", 1)[0]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


class WS:
    """A minimal blocking WebSocket client (reads text frames, sends close)."""

    def __init__(self, port: int, origin: str | None = None, path: str = "/ws"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        origin = origin or f"http://127.0.0.1:{port}"
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def raw_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return b0 & 0x0F, self._read(n)

    def message(self) -> dict:
        opcode, payload = self.raw_frame()
        assert opcode == 1
        return json.loads(payload)

    def close(self) -> None:
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x88, 0x80]) + mask)
        self.sock.close()


def test_dashboard_link(dash_cluster, dclient):
    link = dash_cluster.dashboard_link
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status", link)
    assert dclient.dashboard_link == link
    port = dash_cluster.scheduler.dashboard.port
    assert dclient.scheduler_info()["services"] == {"dashboard": port}


def test_health_and_root_redirect(dash_cluster):
    assert get(base(dash_cluster) + "/health")[::2] == (200, "ok")
    status, _, text = get(base(dash_cluster) + "/")
    assert status == 200 and "<title>Status — shoal</title>" in text  # followed the redirect


def test_metrics_parse_as_prometheus_text(dash_cluster, dclient, poll):
    futures = dclient.map(inc, range(7))
    dclient.gather(futures)
    key = (("task_prefix_name", "inc"), ("state", "memory"))
    # the metrics come from a summary at most one update interval old
    families = poll(lambda: (f := parse_prometheus(get(base(dash_cluster) + "/metrics")[2]))
                    .get("dask_scheduler_prefix_tasks", {}).get(key) == 7 and f)
    status, ctype, _ = get(base(dash_cluster) + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert families["dask_scheduler_workers"][()] == 2
    assert families["dask_scheduler_clients"][()] >= 1
    assert families["dask_scheduler_tasks"][(("state", "memory"),)] >= 7


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse_prometheus(text: str) -> dict[str, dict[tuple, float]]:
    """A strict reader of the text exposition format: HELP and TYPE before each family's
    samples, well-formed names, labels and values; raises on anything else."""
    assert text.endswith("\n")
    families: dict[str, dict[tuple, float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "histogram", "summary", "untyped"), line
            typed.add(name)
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        name, _, labels, value = m.groups()
        assert name in typed, f"sample before its TYPE: {line!r}"
        pairs = tuple(_LABEL.findall(labels or ""))
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
        families.setdefault(name, {})[pairs] = float(value)
    return families


def test_counts_identity_and_sitemap(dash_cluster):
    b = base(dash_cluster)
    status, ctype, text = get(b + "/json/counts.json")
    counts = json.loads(text)
    assert status == 200 and ctype == "application/json"
    assert {"bytes", "clients", "cores", "erred", "idle", "memory", "processing", "tasks", "waiting", "workers"} <= set(
        counts
    )
    assert counts["workers"] == 2 and counts["cores"] == 2
    identity = json.loads(get(b + "/json/identity.json")[2])
    assert identity["address"] == dash_cluster.scheduler_address and len(identity["workers"]) == 2
    paths = json.loads(get(b + "/sitemap.json")[2])["paths"]
    assert {"/status", "/workers", "/health", "/metrics", "/json/counts.json"} <= set(paths)
    for p in paths:
        assert get(b + p)[0] == 200, p


def test_read_only_and_no_path_traversal(dash_cluster):
    b = base(dash_cluster)
    req = urllib.request.Request(b + "/health", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    assert get(b + "/statics/..%2f..%2fapp.py")[0] == 404
    assert get(b + "/statics/nope.js")[0] == 404
    assert get(b + "/nothing-here")[0] == 404


def test_status_page_needs_no_internet(dash_cluster):
    b = base(dash_cluster)
    status, _, html = get(b + "/status")
    assert status == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"./statics/common.js", "./statics/status.js", "./statics/style.css"} <= set(assets)
    for asset in assets:
        assert "//" not in asset, asset  # relative links only: nothing fetched from elsewhere
    for name in ("common.js", "status.js", "style.css", "tasks.js", "system.js", "graph.js", "profile.js"):
        status, _, text = get(f"{b}/statics/{name}")
        text = text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace: a name, not a fetch
        assert status == 200 and "http://" not in text and "https://" not in text
        assert "innerHTML" not in text


def test_task_and_worker_pages_escape_user_strings(dash_cluster, dclient, poll):
    b = base(dash_cluster)
    x = dclient.submit(inc, 1, key=EVIL_KEY)
    x.result()
    status, _, text = get(f"{b}/info/task/{quote(EVIL_KEY, safe='')}.html")
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
    assert "memory" in text
    assert get(f"{b}/info/task/{quote('<b>never</b>', safe='')}.html")[0] == 404

    async def add_worker() -> Worker:
        return await Worker(
            dash_cluster.scheduler_address, name=EVIL_NAME, secret=dash_cluster.security.secret, nthreads=1
        )

    w = _loop.sync(dash_cluster.loop, add_worker)
    try:
        dclient.wait_for_workers(3)
        # the pages are built from a summary at most one update interval old
        poll(lambda: "&lt;img" in get(b + "/workers")[2])
        for page in ("/workers", "/info/main/workers.html", f"/info/worker/{quote(w.address, safe='')}.html"):
            status, _, text = get(b + page)
            assert status == 200, page
            assert "&lt;img src=x onerror=alert(2)&gt;" in text and "<img" not in text, page
    finally:
        _loop.sync(dash_cluster.loop, w.close)
    dclient.wait_for_workers(2)


def test_one_update_per_interval_for_all_viewers(dash_cluster, dclient, poll):
    dashboard = dash_cluster.scheduler.dashboard
    viewers = [WS(dashboard.port) for _ in range(5)]
    try:
        assert all(v.status == 101 for v in viewers)
        for v in viewers:
            assert v.message()["type"] == "init"
        futures = dclient.map(inc, range(20), key=[f"viewed-{i}" for i in range(20)])
        dclient.gather(futures)
        # each viewer reads updates until it has seen the tasks run; viewers that joined
        # later missed the first updates, but every update they share came as the same bytes
        received: list[dict[float, bytes]] = []
        for v in viewers:
            seen: set[str] = set()
            frames: dict[float, bytes] = {}
            while len(seen) < 20:
                opcode, payload = v.raw_frame()
                update = json.loads(payload)
                assert opcode == 1 and update["type"] == "update"
                frames[update["time"]] = payload
                seen.update(r[4] for r in update["stream"] if r[4].startswith("viewed-"))
            received.append(frames)
        common = set.intersection(*(set(f) for f in received))
        assert common
        for t in common:
            assert len({f[t] for f in received}) == 1
        summary = update["summary"]
        assert {w["address"] for w in summary["workers"]} == set(dclient.scheduler_info()["workers"])
        assert summary["states"][5] == "memory"
    finally:
        for v in viewers:
            v.close()
    poll(lambda: not dashboard.viewers and dashboard._ticker is None)
    n = dashboard.updates
    dclient.gather(dclient.map(inc, range(5), key=[f"unviewed-{i}" for i in range(5)]))
    assert dashboard.updates == n  # nobody watching: nothing is built or sent


def test_cross_origin_websocket_refused(dash_cluster):
    ws = WS(dash_cluster.scheduler.dashboard.port, origin="http://evil.example")
    assert ws.status == 403
    ws.sock.close()


def test_dashboard_disabled():
    for address in (None, False):
        with LocalCluster(n_workers=1, processes=False, dashboard_address=address) as cl, Client(cl) as c:
            assert cl.dashboard_link == "" and c.dashboard_link == ""
            assert cl.scheduler.dashboard is None
            assert c.scheduler_info()["services"] == {}


def test_busy_port_falls_back_to_a_free_one(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with (
            caplog.at_level(logging.WARNING, logger="shoal.dashboard"),
            LocalCluster(n_workers=0, processes=False, dashboard_address=f":{port}") as cl,
        ):
            assert cl.scheduler.dashboard.port != port
            assert get(base(cl) + "/health")[0] == 200
        assert f"Port {port} is already in use" in caplog.text


def test_a_failing_page_is_a_500_and_the_server_keeps_serving(dash_cluster, caplog):
    routes = dash_cluster.scheduler.dashboard.routes
    routes["/boom"] = lambda req: 1 / 0
    try:
        with caplog.at_level(logging.ERROR, logger="shoal.dashboard"):
            assert get(base(dash_cluster) + "/boom")[0] == 500
        assert "ZeroDivisionError" in caplog.text
        assert get(base(dash_cluster) + "/health")[0] == 200
    finally:
        del routes["/boom"]


# the pages of issue 19 ------------------------------------------------------------------


def test_new_pages_and_their_json(dash_cluster, dclient, poll):
    from dashboard_task_functions import add, busy, fails

    leaves = dclient.map(busy, range(4), seconds=0.2)
    total = dclient.submit(add, *leaves)
    bad = dclient.submit(fails, 7)
    total.result()
    poll(lambda: bad.done())
    b = base(dash_cluster)
    for page in ("tasks", "system", "graph", "profile"):
        status, ctype, body = get(f"{b}/{page}")
        assert status == 200 and ctype.startswith("text/html") and f"statics/{page}.js" in body
    # one graph for all viewers, rebuilt at most every 2 s: wait for one with these tasks
    g = poll(lambda: (g := json.loads(get(f"{b}/json/graph.json")[2])) and bad.key in {n[0] for n in g["nodes"]} and g)
    keys = {n[0]: n for n in g["nodes"]}
    assert keys[total.key][3] == 1 and keys[leaves[0].key][3] == 0 and keys[bad.key][2] == "erred"
    assert len(g["edges"]) == 4
    status, _, body = get(f"{b}/json/profile.json?prefix=busy")
    p = json.loads(body)
    assert status == 200 and p["prefix"] == "busy" and {"add", "busy", "fails"} <= set(p["prefixes"])
    assert p["tree"]["count"] > 0  # 0.8 s of busy Python code was sampled
    poll(lambda: len(json.loads(get(f"{b}/json/system.json")[2])["samples"]) >= 2, timeout=10)
    status, _, body = get(f"{b}/groups")
    assert status == 200 and "statics/groups.js" in body
    status, _, body = get(f"{b}/workers")
    assert "statics/workers.js" in body and 'id="workers-live"' in body  # the table as of now, then live
    assert "<th>CPU</th>" in body and "<th>Open files</th>" in body and 'class="membar"' in body
    status, _, body = get(f"{b}/info/task/{quote(bad.key, safe='')}.html")
    assert "Traceback (most recent call last)" in body and "in fails" in body
    assert "dashboard_task_functions.py" in body and "shoal/worker" not in body  # the task's own frames
    sitemap = json.loads(get(f"{b}/sitemap.json")[2])["paths"]
    assert {"/tasks", "/system", "/graph", "/profile", "/groups"} <= set(sitemap)


def test_graph_groups_and_profile_pushed_once_for_the_viewers_asking(dash_cluster, dclient, poll):
    from dashboard_task_functions import add, busy

    dashboard = dash_cluster.scheduler.dashboard
    leaves = dclient.map(busy, range(2), seconds=0.2, key=["pushed-0", "pushed-1"])
    total = dclient.submit(add, *leaves, key="pushed-total")
    total.result()
    port = dashboard.port
    b = base(dash_cluster)
    poll(lambda: "pushed-total" in get(f"{b}/json/graph.json")[2])  # the graph is rebuilt at most once per interval
    asking = [WS(port, path="/ws?want=graph,groups") for _ in range(3)]
    profiled = WS(port, path="/ws?want=profile&prefix=pushed")
    plain = WS(port)
    try:
        for v in asking:
            init = v.message()
            assert init["type"] == "init" and init["graph"]["version"] == init["graph_states"]["version"]
            assert {"pushed-0", "pushed-total"} <= {n[0] for n in init["graph"]["nodes"]}
            groups = {g["name"]: g for g in init["groups"]}
            assert groups["pushed-total"]["depends_on"] == ["pushed"] and groups["pushed"]["counts"]["memory"] == 2
        plain.message()
        profiled.message()

        def frames(v: WS, want: str, n: int) -> list[bytes]:
            out = []
            while len(out) < n:
                opcode, payload = v.raw_frame()
                if json.loads(payload)["type"] == want:
                    out.append(payload)
            return out

        # one groups list per tick, the same bytes for every viewer that asked
        groups = [frames(v, "groups", 1)[0] for v in asking]
        assert len(set(groups)) == 1 and {"pushed", "pushed-total"} <= {g["name"] for g in json.loads(groups[0])["groups"]}
        # a new task: its row and edges appended, then the states; the same bytes for all
        new = dclient.submit(inc, 41, key="pushed-new")
        new.result()
        adds = [frames(v, "graph-add", 1)[0] for v in asking]
        assert len(set(adds)) == 1 and "pushed-new" in {n[0] for n in json.loads(adds[0])["nodes"]}
        states = [json.loads(frames(v, "graph-states", 1)[0]) for v in asking]
        assert states[0]["version"] == json.loads(adds[0])["version"] and all(s == states[0] for s in states)
        assert all(isinstance(i, int) for i in states[0]["states"])
        # the profile of one prefix to the viewer that asked for it
        prof = json.loads(frames(profiled, "profile", 1)[0])
        assert prof["prefix"] == "pushed" and prof["tree"]["count"] > 0
        # a viewer that asked for nothing gets the common update only
        kinds = {json.loads(plain.raw_frame()[1])["type"] for _ in range(3)}
        assert kinds == {"update"}
    finally:
        for v in [*asking, profiled, plain]:
            v.close()
    poll(lambda: not dashboard.viewers and not dashboard._asks)
    assert not dashboard._graph.view.tasks  # the last /graph viewer gone: no task of the scheduler's held
