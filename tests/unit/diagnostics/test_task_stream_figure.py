"""The task-stream timeline and time parsing, without a cluster."""

from __future__ import annotations

import time

from shoal.diagnostics.task_stream import TaskStreamFigure, normalize_records, parse_time


def rec(key, worker, thread, start, stop, status="OK", transfer=None):
    startstops = [{"action": "compute", "start": start, "stop": stop}]
    if transfer:
        startstops.insert(0, {"action": "transfer", "start": transfer[0], "stop": transfer[1], "source": "w<0>"})
    r = {"key": key, "worker": worker, "thread": thread, "status": status, "startstops": startstops}
    if status == "error":
        r["exception_text"] = "ValueError: <bad & worse>"
    return r


def test_one_row_per_worker_thread_and_one_bar_per_action():
    records = [
        rec("inc-1", "tcp://a:1", 1, 10.0, 11.0),
        rec("inc-2", "tcp://a:1", 2, 10.5, 12.0, transfer=(10.1, 10.4)),
        rec("boom-1", "tcp://b:1", 1, 11.0, 11.5, status="error"),
    ]
    fig = TaskStreamFigure(records)
    svg = fig._repr_html_()
    assert svg.count("<rect") == 4 + 1  # 4 bars, 1 legend swatch (inc; errors are black)
    assert svg.count("[1]</text>") == 2 and svg.count("[2]</text>") == 1
    assert "#d62728" in svg and "#000000" in svg  # transfer red, error black
    assert "&lt;bad &amp; worse&gt;" in svg and "w&lt;0&gt;" in svg
    assert fig.html.startswith("<!DOCTYPE html>") and "3 tasks" in fig.html


def test_empty_stream_renders():
    fig = TaskStreamFigure([])
    assert "<svg" in fig.html and "0 tasks" in fig.html and "<rect" not in fig.svg


def test_parse_time_and_normalize():
    assert parse_time(None) is None and parse_time(5) == 5.0
    assert abs(parse_time("10s") - (time.time() - 10)) < 5
    wire = ({"key": ("x", 0), "startstops": ({"action": "compute", "start": 1.0, "stop": 2.0},)},)
    [r] = normalize_records(wire)
    assert r["key"] == ("x", 0) and r["startstops"] == [{"action": "compute", "start": 1.0, "stop": 2.0}]
