"""The dashboard in a real browser (headless Chromium) while worker processes compute:
the page goes live over its WebSocket, the task stream and the progress move between
two loads, user strings stay text, and a screenshot is saved to tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from dashboard_task_functions import slow_square

from shoal import Client, LocalCluster

pytestmark = pytest.mark.system

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
EVIL_KEY = "<script>alert(1)</script>"

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium; .ci/run does it)"
)


def chromium(tmp_path: Path, *args: str) -> str:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-default-apps",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=3000", *args,
    ]  # fmt: skip
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def progress(dom: str, prefix: str) -> tuple[int, int]:
    """(tasks in the stream, tasks of `prefix` done) as the page shows them."""
    stream = int(re.search(r'id="stream-count" data-count="(\d+)"', dom).group(1))
    row = re.search(rf'<tr data-prefix="{re.escape(prefix)}">(.*?)</tr>', dom)
    assert row, f"no progress row for {prefix}"
    done = int(re.findall(r"<td>(\d+)</td>", row.group(1))[0])
    return stream, done


def live_dom(tmp_path: Path, link: str, prefix: str, poll) -> str:
    """The page's DOM once a pushed update has drawn `prefix`'s progress row: a headless
    load may end (virtual time budget) before the first WebSocket update arrives."""
    return poll(
        lambda: (dom := chromium(tmp_path, "--dump-dom", link)) and f'<tr data-prefix="{prefix}">' in dom and dom,
        timeout=60,
        interval=0.5,
    )


@needs_chromium
def test_status_page_updates_live_in_a_browser(tmp_path, poll):
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        link = cluster.dashboard_link
        evil = client.submit(slow_square, 3, 0.0, key=EVIL_KEY)
        futures = client.map(slow_square, range(240), delay=0.1)
        poll(lambda: sum(f.done() for f in futures) >= 8, timeout=30)

        first = live_dom(tmp_path, link, "slow_square", poll)
        assert 'id="conn" class="conn">live<' in first and 'data-updates="' in first
        stream1, done1 = progress(first, "slow_square")
        assert stream1 > 0 and done1 > 0

        # the key with <script> in it is text on the page, never markup
        assert first.count("<script") == 2 and "statics/common.js" in first and "statics/status.js" in first
        assert "script&gt;alert(1)&lt;/script" in first

        poll(lambda: sum(f.done() for f in futures) >= done1 + 40, timeout=60)
        second = live_dom(tmp_path, link, "slow_square", poll)
        stream2, done2 = progress(second, "slow_square")
        assert stream2 > stream1 and done2 > done1

        shot = ARTIFACTS / "dashboard-status.png"
        shot.unlink(missing_ok=True)
        chromium(tmp_path, "--window-size=1280,900", f"--screenshot={shot}", link)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000

        evil.result()
        info = chromium(tmp_path, "--dump-dom", f"{link.rsplit('/', 1)[0]}/info/task/{quote(EVIL_KEY, safe='')}.html")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in info and "<script" not in info
        client.gather(futures)
