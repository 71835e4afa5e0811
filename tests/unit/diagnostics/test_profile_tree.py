"""The profile call trees and the sampler, driven by hand (no sampling thread)."""

from __future__ import annotations

import sys
import threading

from shoal import profile
from shoal.diagnostics.profile_plot import ProfileFigure, profile_svg, top_functions


def _leaf() -> object:
    return sys._getframe()


def _middle() -> object:
    return _leaf()


def _outer() -> object:
    return _middle()


def names(tree: dict) -> list[list[str]]:
    """Every root-to-leaf path of function names."""
    out = []

    def walk(node: dict, path: list[str]) -> None:
        if not node["children"]:
            out.append(path)
        for child in node["children"].values():
            walk(child, [*path, child["description"]["name"]])

    walk(tree, [])
    return out


def test_process_builds_a_counted_call_tree_in_distributeds_shape():
    tree = profile.create()
    frame = _outer()
    profile.process(frame, tree, stop=test_process_builds_a_counted_call_tree_in_distributeds_shape.__code__)
    profile.process(frame, tree, stop=test_process_builds_a_counted_call_tree_in_distributeds_shape.__code__)
    assert tree["count"] == 2 and tree["identifier"] == "root"
    assert names(tree) == [["_outer", "_middle", "_leaf"]]
    [outer] = tree["children"].values()
    assert set(outer) == {"count", "children", "description", "identifier"}
    assert outer["count"] == 2
    assert outer["identifier"] == f"_outer;{__file__};{_outer.__code__.co_firstlineno}"
    d = outer["description"]
    assert d["filename"] == __file__ and d["name"] == "_outer" and d["line"] == "return _middle()"


def test_process_leaves_out_skipped_files_and_caps_depth(monkeypatch):
    tree = profile.create()
    frame = _outer()
    profile.process(frame, tree, stop=None, skip=lambda filename: filename == __file__)
    assert all(__file__ not in ident for path in names(tree) for ident in path)
    monkeypatch.setattr(profile, "MAX_DEPTH", 2)
    capped = profile.create()
    profile.process(frame, capped)
    assert len(names(capped)[0]) == 2


def test_merge_sums_without_changing_its_inputs():
    stop = test_merge_sums_without_changing_its_inputs.__code__
    a, b = profile.create(), profile.create()
    profile.process(_outer(), a, stop=stop)
    profile.process(_middle(), b, stop=stop)
    merged = profile.merge(a, b)
    assert merged["count"] == 2
    assert sorted(names(merged)) == [["_middle", "_leaf"], ["_outer", "_middle", "_leaf"]]
    assert a["count"] == 1 and b["count"] == 1
    merged["children"].clear()
    assert a["children"] and b["children"]


def test_sampler_groups_threads_and_windows_cycles_by_time():
    started, release = threading.Event(), threading.Event()

    def parked_in_a_task() -> None:
        started.set()
        release.wait()

    t = threading.Thread(target=parked_in_a_task)
    t.start()
    started.wait()
    try:
        me = threading.get_ident()
        s = profile.Sampler(lambda: [(t.ident, "task-prefix"), (me, profile.SERVER)], interval=0.01, cycle=1)
        s._current_start = 100.0
        s.sample()
        s.sample()
        s.rotate(110.0)
        s.sample()
        s.rotate(120.0)
    finally:
        release.set()
        t.join()
    assert [(a, b) for a, b, _ in s.history] == [(100.0, 110.0), (110.0, 120.0)]
    tasks = s.get_profile()
    assert tasks["count"] == 3
    assert any("parked_in_a_task" in path for path in names(tasks))
    assert s.get_profile(prefix="task-prefix")["count"] == 3
    assert s.get_profile(prefix="other")["count"] == 0
    assert s.get_profile(start=111.0, stop=119.0)["count"] == 1
    assert s.get_profile(start=200.0, stop=300.0)["count"] == 0
    server = s.get_profile(server=True)
    assert server["count"] == 3 and any(
        "test_sampler_groups_threads_and_windows_cycles_by_time" in path for path in names(server)
    )


def test_sampler_history_and_memory_are_bounded():
    s = profile.Sampler(lambda: [(threading.get_ident(), "p")], interval=0.01, history=2, memory_history=3)
    for i in range(5):
        s.sample()
        s.rotate(float(i))
        s.sample_memory(float(i))
    assert len(s.history) == 2 and len(s.memory) == 3
    assert [t for t, _ in s.memory] == [2.0, 3.0, 4.0]
    assert all(rss > 0 for _, rss in s.memory)
    assert s.get_memory(start=3.0) == list(s.memory)[1:]


def test_old_cycles_are_merged_into_coarser_buckets_and_keep_their_samples():
    """The last minute keeps its 1 s cycles, up to ten minutes 10 s buckets, older ones
    minutes; no sample is lost, and nothing older than the history's span is kept."""
    s = profile.Sampler(lambda: [(threading.get_ident(), "p")], interval=0.01, history=3600)
    s._current_start = 0.0
    for t in range(1, 1801):  # half an hour of 1 s cycles, one sample each
        s.sample()
        s.rotate(float(t))
    cycles = list(s.history)
    assert sum(g["p"]["count"] for _, _, g in cycles) == 1800
    assert [b - a for a, b, _ in cycles if b >= 1800 - 60] == [1.0] * 61
    ten = [b - a for a, b, _ in cycles if 1800 - 600 <= b < 1800 - 60]
    assert ten and max(ten) <= 10 and sum(ten) >= 530
    old = [b - a for a, b, _ in cycles if b < 1800 - 600]
    assert old and max(old) <= 60 and len(old) <= 21
    assert len(cycles) < 61 + 60 + 25  # instead of 1800
    assert all(a2 >= b1 for (_, b1, _), (a2, _, _) in zip(cycles, cycles[1:]))  # in order, not overlapping
    assert s.get_profile(start=0.0, stop=600.0)["count"] >= 600
    # an hour later, only the history's span (3600 cycles of 1 s) is left
    s.sample()
    s.rotate(1800.0 + 3600.0)
    assert min(b for _, b, _ in s.history) >= 1800.0


def test_sampler_thread_starts_and_stops():
    s = profile.Sampler(list, interval=0.001, memory_interval=0.001)
    s.start()
    assert s._thread is not None and s._thread.is_alive()
    thread = s._thread
    s.close()
    assert not thread.is_alive()
    off = profile.Sampler(list, interval=0, memory_interval=0)
    off.start()
    assert off._thread is None and not off.enabled
    off.close()


def test_icicle_graph_escapes_and_sizes():
    tree = profile.create()
    tree["count"] = 4
    tree["children"]["x"] = {
        "count": 4, "identifier": "x", "children": {},
        "description": {"filename": "<evil>.py", "name": "<script>alert(1)</script>", "line_number": 1, "line": "&"},
    }  # fmt: skip
    svg = profile_svg(tree)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;evil&gt;.py" in svg
    assert svg.startswith("<svg") and "http" not in svg
    assert "No samples" in profile_svg(profile.create())
    fig = ProfileFigure(tree)
    assert fig.html.startswith("<!DOCTYPE html>") and fig.svg in fig.html
    assert top_functions(tree) == [("<script>alert(1)</script>", "<evil>.py:1", 4, 4)]


def test_top_functions_counts_recursion_once_per_stack():
    def rec(n: int) -> object:
        return sys._getframe() if n == 0 else rec(n - 1)

    tree = profile.create()
    profile.process(rec(3), tree, stop=test_top_functions_counts_recursion_once_per_stack.__code__)
    [(_, _, own, total)] = [t for t in top_functions(tree) if t[0] == "rec"]
    assert (own, total) == (1, 1)


def test_closed_cycles_share_strings_and_descriptions_and_hand_out_copies():
    """The cycles of a sampler's history share one identifier string and description
    dict per frame and line (a node costs its dicts and count, not its strings); what
    `get_profile` hands out shares nothing with the history, and merges keep every sample."""
    s = profile.Sampler(lambda: [(threading.get_ident(), "p")], interval=0.01, history=3600)
    s._current_start = 0.0
    for t in range(1, 4):
        s.sample()
        s.rotate(float(t))

    def nodes(tree: dict) -> list[dict]:
        out = [tree]
        for child in tree["children"].values():
            out.extend(nodes(child))
        return out

    (a, b, c) = [nodes(g["p"])[1:] for _, _, g in s.history]
    assert len(a) == len(b) == len(c) > 3
    for x, y in zip(a, c):
        assert x["identifier"] is y["identifier"] and x["description"] is y["description"]
    out = s.get_profile()
    assert out["count"] == 3
    handed = nodes(out)[1:]
    assert [n["identifier"] for n in handed] == [n["identifier"] for n in a]
    assert all(h["description"] is not x["description"] for h, x in zip(handed, a))
    handed[0]["description"]["line"] = "changed by a reader"
    assert a[0]["description"]["line"] != "changed by a reader"
    # 70 s later the three are one bucket of 10 s: merged, every sample kept
    s.sample()
    s.rotate(75.0)
    assert [g["p"]["count"] for _, _, g in s.history] == [3, 1]
    assert s.get_profile()["count"] == 4
