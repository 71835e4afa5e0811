"""`Client.profile` and `performance_report` against in-process clusters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time

import dask.config
import pytest
from profile_task_functions import recurse_then_spin, spin_until

from shoal import Client, LocalCluster, performance_report, profile
from shoal.diagnostics.profile_plot import ProfileFigure


def function_names(tree: dict) -> set[str]:
    out = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node["children"].values():
            out.add(child["description"]["name"])
            stack.append(child)
    return out


def spin_and_profile(client, poll, tmp_path, **profile_kwargs):
    """Run `spin_until` until the profile shows it; -> (future, profile)."""
    flag = str(tmp_path / "stop")
    fut = client.submit(spin_until, flag, pure=False)
    tree = poll(
        lambda: (t := client.profile(key="spin_until", **profile_kwargs)) and "burn_cpu_here" in function_names(t) and t,
        timeout=20,
    )
    open(flag, "w").close()
    assert fut.result() == "done"
    return fut, tree


def test_profile_shows_where_task_threads_spend_their_time(client, poll, tmp_path):
    _, tree = spin_and_profile(client, poll, tmp_path)
    assert set(tree) == {"count", "children", "description", "identifier"}
    assert tree["count"] > 0
    names = function_names(tree)
    assert {"spin_until", "burn_cpu_here"} <= names
    assert "_execute" not in names and "run_task" not in names  # the worker's machinery is left out
    # the outermost frame of every sample is the task's function
    assert {c["description"]["name"] for c in tree["children"].values()} == {"spin_until"}
    assert client.profile(key="no-such-prefix")["count"] == 0
    everything = client.profile()
    assert everything["count"] >= tree["count"]


def test_profile_time_window_and_workers(client, poll, tmp_path):
    before = time.time()
    fut, _ = spin_and_profile(client, poll, tmp_path)
    assert client.profile(start=time.time() + 3600)["count"] == 0
    assert client.profile(stop=before - 3600)["count"] == 0
    assert client.profile(key="spin_until", start=before)["count"] > 0
    assert client.profile(key="spin_until", start="1 hour")["count"] > 0
    [worker] = client.who_has(fut)[fut.key]
    by_worker = client.profile(key="spin_until", merge_workers=False, start=before)
    assert set(by_worker) == set(client.scheduler_info()["workers"])
    assert by_worker[worker]["count"] > 0
    other = next(w for w in by_worker if w != worker)
    assert client.profile(key="spin_until", workers=[other], start=before)["count"] == by_worker[other]["count"]
    assert client.profile(key="spin_until", workers=worker, start=before)["count"] >= by_worker[worker]["count"]


def test_profile_of_deep_recursion_is_capped_and_travels(client, poll, tmp_path):
    flag = str(tmp_path / "stop")
    fut = client.submit(recurse_then_spin, 400, flag, pure=False)

    def depth(tree: dict) -> int:
        n = 0
        while tree["children"]:
            tree = max(tree["children"].values(), key=lambda c: c["count"])
            n += 1
        return n

    tree = poll(lambda: (t := client.profile(key="recurse_then_spin")) and t["count"] > 0 and t, timeout=20)
    open(flag, "w").close()
    assert fut.result() == "done"
    assert 0 < depth(tree) <= profile.MAX_DEPTH


def test_profile_of_event_loops(client, poll):
    server = poll(lambda: (t := client.profile(server=True)) and t["count"] > 0 and t)
    assert server["children"]
    sched = poll(lambda: (t := client.profile(scheduler=True)) and t["count"] > 0 and t)
    assert sched["children"]


def test_profile_plot_and_filename(client, poll, tmp_path):
    spin_and_profile(client, poll, tmp_path)
    state, figure = client.profile(key="spin_until", plot=True)
    assert isinstance(figure, ProfileFigure) and state["count"] > 0
    assert "burn_cpu_here" in figure.html
    out = tmp_path / "profile.html"
    state, figure = client.profile(key="spin_until", filename=str(out))
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "burn_cpu_here" in page


def test_profiler_can_be_turned_off(cluster_kwargs, tmp_path):
    off = {"shoal.worker.profile.enabled": False, "shoal.scheduler.profile.enabled": False}
    with dask.config.set(off), LocalCluster(**cluster_kwargs) as cl, Client(cl) as c:
        assert set(c.run(lambda dask_worker: dask_worker.profiler.interval).values()) == {0.0}
        assert c.submit(sum, [1, 2]).result() == 3
        assert c.profile()["count"] == 0
        assert c.profile(scheduler=True)["count"] == 0


def test_performance_report_file(client, poll, tmp_path):
    filename = tmp_path / "report.html"
    flag = str(tmp_path / "stop")
    t0 = time.time()
    with performance_report(filename=str(filename)) as pr:
        xs = client.map(lambda x: x + 1, range(5), key=[f"plus-one-{i}" for i in range(5)])
        spinner = client.submit(spin_until, flag, pure=False)
        poll(lambda: "burn_cpu_here" in function_names(client.profile(key="spin_until", start=t0)), timeout=20)
        poll(lambda: all(client._request("memory_history", start=t0).values()), timeout=20)
        open(flag, "w").close()  # UNIQUE-MARKER-OF-THE-BLOCK
        client.gather([*xs, spinner])
    page = filename.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Dask Performance Report" in page
    # self-contained: nothing to fetch
    assert not re.search(r"https?://|<script|<link|<iframe|@import|url\(", page, re.IGNORECASE)
    # the task stream
    for i in range(5):
        assert f"plus-one-{i}" in page
    assert spinner.key in page
    # the profile, the memory chart and the code of the block
    assert "burn_cpu_here" in page
    assert "<polyline" in page
    assert "UNIQUE-MARKER-OF-THE-BLOCK" in page and "with performance_report(" in page
    data = pr.data
    assert data["summary"]["tasks"] == 6 and data["summary"]["errors"] == 0
    assert set(data["summary"]["prefixes"]) == {"plus-one", "spin_until"}
    assert {r["key"] for r in data["task_stream"]} == {*(f.key for f in xs), spinner.key}
    assert data["cluster"]["workers"] == 2 and data["duration"] > 0
    assert set(data["memory"]) == set(client.scheduler_info()["workers"])


def test_performance_report_default_filename_and_transfers(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = sorted(client.scheduler_info()["workers"])
    with performance_report() as pr:
        x = client.submit(lambda: list(range(1000)), workers=[a], pure=False)
        y = client.submit(len, x, workers=[b], pure=False)
        assert y.result() == 1000
    assert os.path.exists("dask-report.html")
    s = pr.data["summary"]
    assert s["transfers"] == 1 and s["bytes_moved"] > 1000


@contextlib.contextmanager
def team_report(filename, stacklevel):
    with performance_report(filename=filename, stacklevel=stacklevel):
        yield


def test_performance_report_stacklevel(client, tmp_path):
    # the helper's generator frame, contextlib's __enter__, then this function
    with team_report(str(tmp_path / "r.html"), stacklevel=3):
        client.submit(sum, [1, 2], pure=False).result()  # CALLER-OF-THE-HELPER
    assert "CALLER-OF-THE-HELPER" in (tmp_path / "r.html").read_text()
    with team_report(str(tmp_path / "r1.html"), stacklevel=1):
        client.submit(sum, [1, 2], pure=False).result()
    assert "with performance_report(filename=filename, stacklevel=stacklevel)" in (tmp_path / "r1.html").read_text()
    with team_report(str(tmp_path / "r2.html"), stacklevel=10_000):
        pass
    assert "source not available" in (tmp_path / "r2.html").read_text()


def test_performance_report_async(cluster_kwargs, tmp_path):
    filename = str(tmp_path / "async-report.html")

    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cl, Client(cl, asynchronous=True) as c:
            async with performance_report(filename=filename) as pr:
                futs = c.map(lambda x: x * 2, range(3), key=["double-0", "double-1", "double-2"])
                assert await c.gather(futs) == [0, 2, 4]  # ASYNC-BLOCK-MARKER
            tree = await c.profile(key="double")
            assert set(tree) == {"count", "children", "description", "identifier"}
            assert set(await c.profile(merge_workers=False)) == {w.address for w in cl.workers.values()}
            return pr.data

    data = asyncio.run(asyncio.wait_for(main(), 30))
    with open(filename) as f:
        page = f.read()
    assert "double-2" in page and "ASYNC-BLOCK-MARKER" in page
    assert data["summary"]["tasks"] == 3


def test_performance_report_writes_urls_through_fsspec(client, tmp_path):
    pytest.importorskip("fsspec")
    target = f"file://{tmp_path / 'via-fsspec.html'}"
    with performance_report(filename=target):
        client.submit(sum, [1, 2], pure=False).result()
    assert "Dask Performance Report" in (tmp_path / "via-fsspec.html").read_text()
