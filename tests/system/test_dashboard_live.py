"""The live pages in one headless Chromium left open while the cluster changes: `/workers`,
`/groups`, `/graph` and `/profile` redraw from what the scheduler pushes over the page's
WebSocket (no reload): a worker joins, a new group of tasks runs and one errs, the graph
grows to 10,000 tasks, the profile gains samples; `/status`, `/tasks` and `/system` draw
the tasks and samples that came meanwhile; an erred task's page shows its traceback.
Every page at 1000 px: nothing overlaps or overflows, a screenshot that is not blank. No
console errors on the way, no link answering 404. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import urllib.error
from urllib.parse import quote
import urllib.request

import pytest
from browser_driver import CHROMIUM, Browser, not_blank
from dashboard_task_functions import add, busy, fails, slow_square
from test_dashboard_browser import ARTIFACTS

from shoal import Client, LocalCluster

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium; .ci/run does it)"),
]
pytest.importorskip("tornado", reason="the DevTools client is tornado's WebSocket (a test dependency via distributed)")

PAGES = ("workers", "groups", "graph", "profile")
OTHERS = ("status", "tasks", "system")
#: the two boxes' rectangles intersect (the status page at 1000 px must stack them)
OVERLAP = ("(() => { const a = document.getElementById('progress').getBoundingClientRect(),"
           " b = document.getElementById('workers').getBoundingClientRect();"
           " return !(a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top); })()")
UPDATES = "Number(document.body.dataset.updates || 0)"  # pushes drawn
MESSAGES = "Number(document.body.dataset.messages || 0)"  # pushes received
WORKER_ROWS = "document.querySelectorAll('#workers-live tr[data-worker]').length"
GROUPS = "[...document.querySelectorAll('#groups-live g[data-group]')].map(g => g.dataset.group)"
GRAPH_COUNT = "Number(document.getElementById('graph-count').dataset.count)"
ERRED_IN_GRAPH = "Number((document.querySelector('#graph-legend [data-state=erred]') || {dataset: {}}).dataset.count || 0)"
PROFILE_COUNT = "Number(document.getElementById('profile-count').dataset.count)"
FITS = "[...document.querySelectorAll('main section, .scroll')].every(e => e.scrollWidth <= e.clientWidth + 1)"
LINKS = "[...document.querySelectorAll('a[href]')].map(a => a.href)"


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def inc(x):
    return x + 1


@pytest.mark.timeout(300)  # a loaded machine slows the updates (the ticker waits 50x a tick's cost)
def test_live_pages_follow_the_cluster(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        base = cluster.dashboard_link.rsplit("/", 1)[0] + "/"
        first = client.map(busy, range(4), seconds=0.2)
        client.gather(first)
        dashboard = cluster.scheduler.dashboard

        async def drive() -> None:
            async with Browser(tmp_path / "chromium", width=1000) as browser:
                tabs = {name: await browser.open(base + name) for name in PAGES + OTHERS}
                for name, tab in tabs.items():
                    await tab.until(f"{UPDATES if name in PAGES else MESSAGES} >= 1")
                assert await tabs["workers"].js(WORKER_ROWS) == 1
                assert await tabs["groups"].until(GROUPS) == ["busy"]
                before_graph = await tabs["graph"].js(GRAPH_COUNT)
                before_profile = await tabs["profile"].until(PROFILE_COUNT)
                # every page asked for what it draws: one graph, one groups list, one profile
                # for all of them, pushed over the same connection the page opened
                assert sorted(w for wants, _ in dashboard._asks.values() for w in wants) == ["graph", "groups", "profile"]

                # the cluster changes while the pages stay open
                await asyncio.to_thread(cluster.scale, 2)
                new = client.map(slow_square, range(40), delay=0.02)
                bad = client.submit(fails, 1)
                more = client.map(busy, range(4, 8), seconds=0.3)
                await asyncio.to_thread(client.gather, new + more)
                await asyncio.to_thread(bad.exception)

                await tabs["workers"].until(f"{WORKER_ROWS} == 2")
                groups = set(await tabs["groups"].until(f"{GROUPS}.length >= 3 && {GROUPS}"))
                assert {"busy", "slow_square", "fails"} <= groups
                await tabs["graph"].until(f"{GRAPH_COUNT} >= {before_graph + 45} && {ERRED_IN_GRAPH} == 1")
                await tabs["profile"].until(f"{PROFILE_COUNT} > {before_profile}")

                # the pages drawing the common update drew the tasks and samples that came meanwhile
                for name in ("status", "tasks"):
                    assert await tabs[name].js("Number(document.getElementById('stream-count').dataset.count)") >= 40
                await tabs["system"].until("Number(document.body.dataset.samples) >= 2")
                # an erred task's page shows its traceback, the task's own frames
                info = await browser.open(base + f"info/task/{quote(bad.key, safe='')}.html")
                text = await info.js("document.body.innerText")
                assert "Traceback (most recent call last)" in text and "in fails" in text, text
                assert "dashboard_task_functions.py" in text
                tabs["task-info"] = info
                assert await tabs["status"].js(OVERLAP) is False
                for name in ("status", "workers"):  # their tables fit 1000 px: no scrolling box needed
                    assert await tabs[name].js(FITS), name
                for name, tab in tabs.items():
                    shot = ARTIFACTS / f"dashboard-live-{name}-1000.png"
                    assert not_blank(await tab.screenshot(shot)) > 0.02, f"{name} looks empty"
                    # nothing overflows the 1000 px window but the scrolling boxes made for it
                    assert await tab.js("document.documentElement.scrollWidth") <= 1000, name
                links = {href for tab in tabs.values() for href in await tab.js(LINKS)}
                for tab in tabs.values():
                    assert not tab.errors, (tab.url, tab.errors)
                for name, tab in tabs.items():  # only the graph page renders from here on
                    if name != "graph":
                        await tab.close()

                # 10,000 tasks on the graph page: drawn, hover and zoom answer, nothing breaks
                leaves = client.map(inc, range(5000), key=[f"inc-many-{i}" for i in range(5000)])
                pairs = client.map(add, leaves, leaves[::-1], key=[f"add-many-{i}" for i in range(5000)])
                await asyncio.to_thread(client.gather, pairs)
                await tabs["graph"].until(f"{GRAPH_COUNT} >= 10000", timeout=90)
                edges = await tabs["graph"].js("document.getElementById('graph-count').textContent")
                assert ", 10000 dependencies" in edges, edges
                g = tabs["graph"]
                await g.js("(() => { const c = document.getElementById('graph'), r = c.getBoundingClientRect();"
                           " c.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: r.left + r.width / 2,"
                           " clientY: r.top + 50, bubbles: true, cancelable: true})); return true; })()")  # fmt: skip
                assert ", zoomed 1.3×" in await g.js("document.getElementById('graph-count').textContent")
                await g.js("(() => { const c = document.getElementById('graph'), r = c.getBoundingClientRect();"
                           " c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + 20, clientY: r.top + 100,"
                           " bubbles: true})); return true; })()")  # fmt: skip
                assert " (prefix " in await g.js("document.getElementById('hover').textContent")  # a task under the pointer

                shot = ARTIFACTS / "dashboard-live-graph-10000-1000.png"
                assert not_blank(await g.screenshot(shot)) > 0.02
                assert not g.errors, g.errors
                return links

        links = asyncio.run(drive())
        assert len(links) >= 12
        broken = [link for link in sorted(links) if status_of(link) == 404]
        assert not broken
        assert dashboard.costs["graph"] > 0 and dashboard.costs["groups"] > 0
