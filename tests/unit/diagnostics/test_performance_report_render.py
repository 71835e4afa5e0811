"""The performance report page and summary, from hand-made data (no cluster)."""

from __future__ import annotations

import re
import sys

from shoal import profile
from shoal.diagnostics.performance_report import _block_source, render_report, summarize


def rec(key, worker, start, stop, transfers=(), status="OK", nbytes=8):
    ss = [{"action": "transfer", "start": a, "stop": b, "source": src, "nbytes": n} for a, b, src, n in transfers]
    ss.append({"action": "compute", "start": start, "stop": stop})
    r = {"key": key, "worker": worker, "thread": 1, "status": status, "startstops": ss}
    if status == "OK":
        r.update(nbytes=nbytes, type="int", typename="int")
    else:
        r.update(exception_text="ValueError('x')", traceback_text="")
    return r


RECORDS = [
    rec("inc-1", "tcp://a:1", 10.0, 11.0),
    rec("inc-2", "tcp://b:1", 10.0, 12.0),
    # two dependents fed by the same fetch: its bytes count once
    rec("add-1", "tcp://a:1", 13.0, 13.5, transfers=[(12.0, 12.5, "tcp://b:1", 100)]),
    rec("add-2", "tcp://a:1", 13.5, 14.0, transfers=[(12.0, 12.5, "tcp://b:1", 100)]),
    rec("boom-1", "tcp://b:1", 14.0, 14.25, status="error"),
]


def test_summary_by_prefix_and_bytes_moved():
    s = summarize(RECORDS)
    assert s["tasks"] == 5 and s["errors"] == 1
    assert s["compute_time"] == 1.0 + 2.0 + 0.5 + 0.5 + 0.25
    assert s["transfer_time"] == 1.0
    assert s["transfers"] == 1 and s["bytes_moved"] == 100
    assert list(s["prefixes"]) == ["inc", "add", "boom"]  # by compute time
    assert s["prefixes"]["inc"] == {"count": 2, "errors": 0, "compute": 3.0, "transfer": 0.0, "nbytes": 16}
    assert s["prefixes"]["boom"]["errors"] == 1


def _data(**changes):
    tree = profile.create()
    profile.process(sys._getframe(), tree)
    data = {
        "start": 10.0, "stop": 15.0, "duration": 5.0, "code": "with performance_report():\n    f('<x>')\n",
        "cluster": {"scheduler": "tcp://s:1", "workers": 2, "threads": 2, "memory": 2**30},
        "versions": {"shoal": "0", "dask": "0", "python": "3"}, "task_stream": RECORDS, "tasks_missing": 0,
        "summary": summarize(RECORDS), "profile": tree, "profile_server": profile.create(),
        "profile_scheduler": profile.create(), "memory": {"tcp://a:1": [(10.0, 1000), (12.0, 3000)]},
    }  # fmt: skip
    data.update(changes)
    return data


def test_page_is_self_contained_and_escaped():
    records = [*RECORDS, rec("<img src=x onerror=alert(1)>-1", "tcp://a:1", 11.0, 12.0)]
    page = render_report(_data(task_stream=records, summary=summarize(records)))
    assert page.startswith("<!DOCTYPE html>") and "Dask Performance Report" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "f(&#x27;&lt;x&gt;&#x27;)" in page  # the code block, escaped
    assert not re.search(r"https?://|<script|<link|<iframe|@import|url\(", page, re.IGNORECASE)
    for section in ("Summary", "Task Stream", "Worker Profile (compute)", "Worker Memory", "Code"):
        assert section in page
    assert "inc-2" in page and "boom-1" in page  # task stream bars
    assert "<polyline" in page  # the memory chart
    assert "test_page_is_self_contained_and_escaped" in page  # the profile
    assert "100 B" in page  # bytes moved


def test_page_says_when_tasks_are_missing_and_when_there_is_nothing():
    page = render_report(_data(tasks_missing=7))
    assert "7 tasks of this block are missing" in page
    empty = render_report(_data(task_stream=[], summary=summarize([]), memory={}, profile=profile.create()))
    assert "No tasks finished inside the block" in empty and "No memory samples" in empty


class _Capture:
    def __enter__(self):
        self.src = _block_source(sys._getframe(1))
        return self

    def __exit__(self, *exc):
        return None


def test_block_source_is_the_with_statement_and_its_body():
    def user_code():
        before = 0
        with _Capture() as cap:
            x = before + 1  # inside the block

            x += 1
        after = x
        return cap.src, after

    src, _ = user_code()
    lines = src.splitlines()
    assert lines[0].startswith(f"# {__file__}:")
    assert lines[1:] == ["with _Capture() as cap:", "    x = before + 1  # inside the block", "", "    x += 1"]


def test_block_source_without_source():
    namespace: dict = {}
    exec("import sys\nframe = sys._getframe()", namespace)  # noqa: S102
    assert "source not available" in _block_source(namespace["frame"])
