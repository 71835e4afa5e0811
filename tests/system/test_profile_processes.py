"""The profiler and performance_report with real worker processes."""

from __future__ import annotations

import os
import re
import time

import pytest
from profile_task_functions import spin_until

from shoal import performance_report

pytestmark = pytest.mark.system


def function_names(tree: dict) -> set[str]:
    out = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node["children"].values():
            out.add(child["description"]["name"])
            stack.append(child)
    return out


def test_slow_function_shows_in_profile_and_report(client, poll, tmp_path):
    pids = {w["pid"] for w in client.scheduler_info()["workers"].values()}
    assert os.getpid() not in pids
    filename = tmp_path / "report.html"
    flag = str(tmp_path / "stop")
    t0 = time.time()
    with performance_report(filename=str(filename)) as pr:
        spinner = client.submit(spin_until, flag, pure=False)
        tree = poll(
            lambda: (t := client.profile(key="spin_until", start=t0)) and "burn_cpu_here" in function_names(t) and t,
            timeout=30,
        )
        poll(lambda: all(client._request("memory_history", start=t0).values()), timeout=30)
        open(flag, "w").close()
        assert spinner.result() == "done"
    # the profile came from the worker process that ran the task
    [worker] = client.who_has(spinner)[spinner.key]
    by_worker = client.profile(key="spin_until", start=t0, merge_workers=False)
    assert by_worker[worker]["count"] > 0
    assert {"spin_until", "burn_cpu_here"} <= function_names(tree)
    page = filename.read_text()
    assert not re.search(r"https?://|<script|<link|<iframe|@import|url\(", page, re.IGNORECASE)
    assert spinner.key in page and "burn_cpu_here" in page and "profile_task_functions.py" in page
    assert "client.submit(spin_until, flag, pure=False)" in page  # the code of the block
    assert pr.data["summary"]["tasks"] == 1
    # each worker process reports its own RSS
    assert set(pr.data["memory"]) == set(client.scheduler_info()["workers"])
    assert all(rss > 0 for samples in pr.data["memory"].values() for _, rss, *_ in samples)
