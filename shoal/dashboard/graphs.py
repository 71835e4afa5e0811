"""The task graph and the task groups as the dashboard draws them: PURE (no I/O).

* `graph_json(state, limit)`: the tasks the scheduler knows (at most `limit`), each with
  its prefix, state and depth (the longest chain of dependencies below it), and the edges
  between them; `/graph` lays them out by depth in the browser and colours them by state.
  Between rebuilds the page gets only `node_states(tasks)` (one small integer per task)
  while `same_tasks(state, tasks, total)` says the drawn graph is still the scheduler's.
* `prune_profile(tree, fraction)`: a profile call tree without the frames holding less
  than `fraction` of the samples (what `/profile` draws: bounded, whatever the run).
* `groups(state)`: tasks grouped by prefix: counts per state, bytes in memory, and which
  groups each group depends on; `/groups` draws that as boxes in layers, arrows from a
  group's dependencies.
"""

from __future__ import annotations

from typing import Any

from shoal.dashboard.snapshot import STATES, key_text

#: at most this many tasks are sent to `/graph` (the first ones the scheduler holds)
GRAPH_LIMIT = 20_000
_STATE_INDEX = {s: i for i, s in enumerate(STATES)}


def _depths(deps: list[list[int]], depth: list[int]) -> list[int]:
    """Depth of each task (by index; `deps[i]`: the indexes of task i's dependencies): 0
    without dependencies, else one more than its deepest dependency; `depth` holds those
    already known (-1 for the others) and is filled in. Iterative (graphs can be deep); a
    cycle, which a task graph never has, is cut where it closes."""
    # -1 not seen, -2 seen and waiting for its dependencies
    for i in range(len(deps)):
        if depth[i] != -1:
            continue
        stack = [i]
        while stack:
            j = stack[-1]
            if depth[j] == -1:
                depth[j] = -2
                stack.extend(d for d in deps[j] if depth[d] == -1)
                continue
            stack.pop()
            if depth[j] == -2:
                depth[j] = 1 + max([depth[d] for d in deps[j] if depth[d] >= 0], default=-1)
    return depth


def graph_tasks(state: Any, limit: int = GRAPH_LIMIT) -> dict[Any, Any]:
    """The tasks `/graph` draws: the first `limit` the scheduler holds (key -> task)."""
    nodes: dict[Any, Any] = {}
    for key, ts in state.tasks.items():
        if len(nodes) >= limit:
            break
        nodes[key] = ts
    return nodes


def same_tasks(state: Any, nodes: dict[Any, Any], total: int) -> bool:
    """Whether `nodes` (from `graph_tasks`, when the scheduler held `total` tasks) are still
    the tasks to draw: no task added or forgotten since (a task forgotten and submitted
    again is a new task object)."""
    tasks = state.tasks
    if len(tasks) != total:
        return False
    get = tasks.get
    return all(get(key) is ts for key, ts in nodes.items())


def node_states(nodes: dict[Any, Any]) -> list[int]:
    """Each task's state as its index in `STATES` (-1: forgotten), in `graph_json`'s order."""
    index = _STATE_INDEX
    return [index.get(ts.state, -1) for ts in nodes.values()]


def graph_json(
    state: Any, limit: int = GRAPH_LIMIT, nodes: dict[Any, Any] | None = None, before: tuple[dict, dict] | None = None
) -> dict:
    """`{"nodes": [[key, prefix, state, depth], ...], "edges": [[dependency index,
    dependent index], ...], "total": tasks known, "states": STATES}` of `nodes` (default:
    `graph_tasks(state, limit)`). `before`: the `(nodes, result)` of an earlier build; a
    task that is still the same object keeps its key text and depth from it (a task's
    dependencies do not change once submitted), so a rebuild walks only the new tasks."""
    tasks = state.tasks
    if nodes is None:
        nodes = graph_tasks(state, limit)
    old: dict[Any, tuple[Any, list]] = {}
    if before is not None:
        old = {key: (ts, row) for (key, ts), row in zip(before[0].items(), before[1]["nodes"])}
    index = {id(ts): i for i, ts in enumerate(nodes.values())}  # by identity: no key hashing
    get = index.get
    deps = [[j for d in ts.dependencies if (j := get(id(d))) is not None] for ts in nodes.values()]
    depth = [-1] * len(deps)
    texts: list[str | None] = [None] * len(deps)
    if old:
        for i, (key, ts) in enumerate(nodes.items()):
            seen = old.get(key)
            if seen is not None and seen[0] is ts:
                texts[i], depth[i] = seen[1][0], seen[1][3]
    depth = _depths(deps, depth)
    out_nodes = [
        [texts[i] if texts[i] is not None else key_text(key), ts.prefix, ts.state, depth[i]]
        for i, (key, ts) in enumerate(nodes.items())
    ]
    edges = [[j, i] for i, ds in enumerate(deps) for j in ds]
    return {"nodes": out_nodes, "edges": edges, "total": len(tasks), "states": list(STATES)}


def groups(state: Any) -> list[dict]:
    """One entry per prefix: `name`, `counts` (state -> n), `nbytes`, `depends_on`
    (prefixes), `depth` (layer in the drawing), sorted by depth then name."""
    out: dict[str, dict] = {}
    for ts in state.tasks.values():
        g = out.get(ts.prefix)
        if g is None:
            g = out[ts.prefix] = {"name": ts.prefix, "counts": dict.fromkeys(STATES, 0), "nbytes": 0, "deps": set()}
        if ts.state in g["counts"]:
            g["counts"][ts.state] += 1
        if ts.state == "memory":
            g["nbytes"] += ts.nbytes or 0
        for d in ts.dependencies:
            if d.prefix != ts.prefix:
                g["deps"].add(d.prefix)
    depth: dict[str, int] = {}
    for _ in range(len(out) + 1):  # longest path in the group graph (cycles: bounded rounds)
        changed = False
        for name, g in out.items():
            d = 1 + max((depth.get(p, 0) for p in g["deps"] if p in out), default=-1)
            if depth.get(name) != d and d <= len(out):
                depth[name], changed = d, True
        if not changed:
            break
    result = [
        {"name": n, "counts": g["counts"], "nbytes": g["nbytes"], "depends_on": sorted(g["deps"] & out.keys()),
         "depth": depth.get(n, 0)}
        for n, g in out.items()
    ]  # fmt: skip
    result.sort(key=lambda g: (g["depth"], g["name"]))
    return result


def prune_profile(tree: dict, fraction: float = 0.002) -> dict:
    """A copy of the call tree `tree` (`shoal.profile` shape) keeping only what `/profile`
    draws: each frame's `description` (name, filename, line number), `count` and children
    holding at least `fraction` of all samples."""
    total = tree.get("count", 0)
    least = max(total * fraction, 1)

    def walk(node: dict) -> dict:
        d = node.get("description") or {}
        out = {
            "name": str(d.get("name", "")), "filename": str(d.get("filename", "")),
            "line_number": d.get("line_number", 0), "count": node.get("count", 0), "children": [],
        }  # fmt: skip
        return out

    root = walk(tree)
    stack = [(tree, root)]
    while stack:
        node, out = stack.pop()
        for child in sorted((node.get("children") or {}).values(), key=lambda c: -c.get("count", 0)):
            if child.get("count", 0) < least:
                continue
            c = walk(child)
            out["children"].append(c)
            stack.append((child, c))
    return root
