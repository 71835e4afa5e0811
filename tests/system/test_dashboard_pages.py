"""Every dashboard page in headless Chromium while a cluster computes: each loads without
console errors (scripts, Content-Security-Policy), draws a non-empty chart (its data
attributes, and a screenshot at 1000 px wide that is not blank), and no link on it
answers 404. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
from dashboard_task_functions import add, busy, fails, slow_square
from test_dashboard_browser import ARTIFACTS, CHROMIUM, needs_chromium

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system

#: page -> (a regular expression its live DOM must match: the chart has data)
PAGES = {
    "status": r'id="stream-count" data-count="[1-9]',
    "tasks": r'id="stream-count" data-count="[1-9]',
    "system": r'data-samples="([2-9]|\d\d)',
    "workers": r"<svg class=\"membar\"",
    "profile": r'id="profile-count" data-count="[1-9]',
    "graph": r'id="graph-count" data-count="[1-9]',
    "groups": r'<svg class="groups"',
}


def chromium(tmp_path: Path, *args: str) -> tuple[str, str]:
    import subprocess

    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-default-apps",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
        "--v=0", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=2500", *args,
    ]  # fmt: skip
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


def console_errors(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "CONSOLE" in line]
    return [line for line in lines if re.search(r"Uncaught|Refused|Error|error|failed", line)]


def not_blank(png: bytes) -> float:
    """The share of pixels that differ from the most common colour (the background)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB").resize((250, 225))
    colours = img.getcolors(250 * 225)
    return 1 - max(n for n, _ in colours) / (250 * 225)


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@needs_chromium
def test_every_page_draws_without_errors_or_broken_links(tmp_path, poll):
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        base = cluster.dashboard_link.rsplit("/", 1)[0] + "/"
        leaves = client.map(busy, range(8), seconds=0.3)
        total = client.submit(add, *leaves)
        bad = client.submit(fails, 1)
        slow = client.map(slow_square, range(100), delay=0.05)
        total.result()
        poll(lambda: bad.done(), timeout=30)
        poll(lambda: len(cluster.scheduler.dashboard.system.history) >= 3, timeout=30)
        checked_links: set[str] = set()
        for name, drawn in PAGES.items():
            url = base + name
            dom = poll(lambda: (d := chromium(tmp_path, "--dump-dom", url)[0]) and re.search(drawn, d) and d,
                       timeout=60, interval=0.5)  # fmt: skip
            for width in (1000,) if name != "status" else (1280, 1000):
                shot = ARTIFACTS / f"dashboard-{name}-{width}.png"
                shot.unlink(missing_ok=True)
                _, log = chromium(tmp_path, f"--window-size={width},900", f"--screenshot={shot}", url)
                assert not console_errors(log), (name, console_errors(log))
                assert not_blank(shot.read_bytes()) > 0.02, f"{name} at {width} px looks empty"
            for href in re.findall(r'href="([^"#]+)"', dom):
                link = urljoin(url, href.replace("&amp;", "&"))
                if link not in checked_links:
                    checked_links.add(link)
                    assert status_of(link) != 404, f"{name} links to {link}: 404"
        assert len(checked_links) >= 12
        # an erred task's page shows its traceback
        info = base + f"info/task/{quote(bad.key, safe='')}.html"
        dom, log = chromium(tmp_path, "--dump-dom", info)
        assert "Traceback (most recent call last)" in dom and "in fails" in dom and "dashboard_task_functions.py" in dom
        client.cancel(slow)
