"""The dashboard's pure views of the scheduler: the task graph by depth, task groups and
their dependencies, a pruned profile (`shoal/dashboard/graphs.py`); the system sampler."""

from __future__ import annotations

from types import SimpleNamespace

from shoal.dashboard import graphs, pages
from shoal.dashboard.snapshot import STATES
from shoal.system_monitor import FIELDS, SystemMonitor


def task(key, prefix, state="memory", deps=(), nbytes=8):
    return SimpleNamespace(key=key, prefix=prefix, state=state, dependencies=list(deps), nbytes=nbytes)


def state_of(*tasks):
    return SimpleNamespace(tasks={t.key: t for t in tasks})


def diamond():
    a = task("a-1", "a")
    b1, b2 = task("b-1", "b", deps=[a]), task("b-2", "b", "processing", deps=[a])
    c = task("c-1", "c", "waiting", deps=[b1, b2])
    return state_of(c, b2, a, b1)  # not in dependency order


def test_graph_json_depths_and_edges():
    g = graphs.graph_json(diamond())
    nodes = {n[0]: n for n in g["nodes"]}
    assert {k: n[3] for k, n in nodes.items()} == {"a-1": 0, "b-1": 1, "b-2": 1, "c-1": 2}
    keys = [n[0] for n in g["nodes"]]
    assert sorted((keys[a], keys[b]) for a, b in g["edges"]) == [
        ("a-1", "b-1"), ("a-1", "b-2"), ("b-1", "c-1"), ("b-2", "c-1")
    ]  # fmt: skip
    assert g["total"] == 4 and nodes["b-2"][2] == "processing"
    capped = graphs.graph_json(diamond(), limit=2)
    assert len(capped["nodes"]) == 2 and capped["total"] == 4


def test_graph_json_handles_deep_chains():
    prev, tasks = None, []
    for i in range(5000):
        prev = task(f"x-{i}", "x", deps=[prev] if prev else [])
        tasks.append(prev)
    g = graphs.graph_json(state_of(*reversed(tasks)))
    assert max(n[3] for n in g["nodes"]) == 4999


def test_groups():
    groups = graphs.groups(diamond())
    assert [(g["name"], g["depth"], g["depends_on"]) for g in groups] == [("a", 0, []), ("b", 1, ["a"]), ("c", 2, ["b"])]
    assert groups[1]["counts"]["memory"] == 1 and groups[1]["counts"]["processing"] == 1
    assert graphs.groups(state_of()) == []


def test_between_changes_only_states_travel():
    state = diamond()
    view = graphs.GraphView()
    assert view.update(state)["type"] == "graph" and view.version == 1
    keys = [n[0] for n in view.body["nodes"]]
    state.tasks["c-1"].state = "erred"
    assert view.update(state) is None  # a state is no change of the graph
    states = view.states(state)
    assert states[keys.index("c-1")] == STATES.index("erred") and states[keys.index("a-1")] == STATES.index("memory")
    state.tasks.pop("b-2").state = "forgotten"  # as the scheduler forgets: drawn as such, nothing re-sent
    assert view.update(state) is None and view.states(state)[keys.index("b-2")] == -1
    state.tasks.pop("a-1").state = "forgotten"
    state.tasks["a-1"] = task("a-1", "a")  # forgotten and submitted again: another task, at the end
    change = view.update(state)
    assert change["type"] == "graph-add" and [n[0] for n in change["nodes"]] == ["a-1"]
    assert view.states(state)[keys.index("a-1")] == -1  # the old one is gone


def test_new_tasks_are_appended_and_only_they_are_walked():
    state = diamond()
    view = graphs.GraphView()
    view.update(state)
    first = [list(n) for n in view.body["nodes"]]
    view.body["nodes"][[n[0] for n in first].index("c-1")][3] = 7  # (to see the known depth reused)
    state.tasks["d-1"] = task("d-1", "d", deps=[state.tasks["c-1"]])
    state.tasks["e-1"] = task("e-1", "e", deps=[state.tasks["d-1"], state.tasks["a-1"]])
    change = view.update(state)
    assert change["type"] == "graph-add" and change["base"] == 4 and change["version"] == 2
    assert [(n[0], n[3]) for n in change["nodes"]] == [("d-1", 8), ("e-1", 9)]
    a, c = [n[0] for n in first].index("a-1"), [n[0] for n in first].index("c-1")
    assert sorted(change["edges"]) == sorted([[c, 4], [4, 5], [a, 5]])
    assert len(view.body["nodes"]) == 6 and len(view.body["edges"]) == 7 and view.body["total"] == 6
    assert view.body["version"] == view.version == 2


def test_a_new_graph_once_half_is_forgotten_and_nothing_beyond_the_limit():
    state = diamond()
    view = graphs.GraphView(limit=5)
    view.update(state)
    for key in ("a-1", "b-1", "b-2"):
        state.tasks.pop(key).state = "forgotten"
    change = view.update(state)
    assert change["type"] == "graph" and [n[0] for n in change["graph"]["nodes"]] == ["c-1"]
    for i in range(10):
        state.tasks[f"x-{i}"] = task(f"x-{i}", "x")
    change = view.update(state)  # beyond the limit: the newest tasks
    assert change["type"] == "graph" and [n[0] for n in view.body["nodes"]] == [f"x-{i}" for i in range(5, 10)]
    assert view.body["total"] == 11
    assert view.update(state) is None
    assert graphs.graph_json(state, limit=5)["total"] == 11


def test_prune_profile_keeps_the_frames_that_can_be_seen():
    leaf = {"description": {"name": "tiny", "filename": "t.py", "line_number": 3}, "count": 1, "children": {}}
    big = {"description": {"name": "work", "filename": "w.py", "line_number": 9}, "count": 999,
           "children": {"t": leaf}}  # fmt: skip
    tree = {"description": {}, "count": 1000, "children": {"w": big}}
    out = graphs.prune_profile(tree, fraction=0.01)
    assert out["count"] == 1000 and [c["name"] for c in out["children"]] == ["work"]
    assert out["children"][0]["children"] == []  # 1 sample of 1000 is below 1%


def test_system_monitor_samples():
    m = SystemMonitor(n=3)
    for _ in range(5):
        s = m.sample()
    assert len(s) == len(FIELDS) and len(m.history) == 3
    assert s[2] > 0 and s[3] > 0 and s[1] >= 0  # RSS, open files, CPU
    metrics = m.as_metrics()
    assert set(metrics) == {"cpu", "num_fds", "host_net_io"} and set(metrics["host_net_io"]) == {"read_bps", "write_bps"}


def test_traceback_text():
    text = pages.traceback_text([("/u/f.py", 3, "outer"), ("/u/f.py", 7, "inner"), "junk"])
    assert text.splitlines() == [
        "Traceback (most recent call last):", '  File "/u/f.py", line 3, in outer', '  File "/u/f.py", line 7, in inner'
    ]  # fmt: skip
