"""The task graph and the task groups as the dashboard draws them: PURE (no I/O).

* `GraphView`: the tasks the scheduler knows (at most `limit`), each with its prefix,
  state and depth (the longest chain of dependencies below it), and the edges between
  them; `/graph` lays them out by depth in the browser and colours them by state. It is
  kept in step by changes: new tasks appended, the states as one small integer per task,
  a new graph only once many drawn tasks are forgotten. `graph_json(state)`: from nothing.
* `prune_profile(tree, fraction)`: a profile call tree without the frames holding less
  than `fraction` of the samples (what `/profile` draws: bounded, whatever the run).
* `groups(state)`: tasks grouped by prefix: counts per state, bytes in memory, and which
  groups each group depends on; `/groups` draws that as boxes in layers, arrows from a
  group's dependencies.
"""

from __future__ import annotations

from typing import Any

from shoal.dashboard.snapshot import STATES, key_text

#: at most this many tasks are sent to `/graph` (the newest the scheduler holds; distributed
#: draws none above its `dashboard.graph-max-items`, 5,000)
GRAPH_LIMIT = 10_000
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


class GraphView:
    """The task graph `/graph` draws, kept in step with the scheduler's tasks by changes.

    `body` is the graph as a page draws it: `{"nodes": [[key, prefix, state, depth], ...],
    "edges": [[dependency index, dependent index], ...], "total": tasks known, "states":
    STATES, "version": n}`, at most `limit` nodes, the newest tasks the scheduler held.
    `update(state)` says what changed since: `None` (no task added or forgotten), the new
    tasks appended (`{"type": "graph-add", "version", "base", "nodes", "edges", "total"}`:
    a page appends them, the indexes of the others stay), or a new graph (`{"type":
    "graph", "graph": body}`) once the forgotten tasks are half of those drawn or new
    tasks go beyond the limit. Only the new tasks are walked for their depth. `states(state)` is
    each drawn task's state now as its index in `STATES` (-1: forgotten), one small integer
    per task: what pages get between changes.
    """

    def __init__(self, limit: int = GRAPH_LIMIT):
        self.limit = limit
        self.tasks: list[tuple[Any, Any]] = []  # (key, task) by index
        self.drawn: dict[int, int] = {}  # id(task) -> index
        self.body: dict = {}
        self.version = 0

    def rebuild(self, state: Any) -> dict:
        self.tasks, self.drawn = [], {}
        self.body = {"nodes": [], "edges": [], "total": 0, "states": list(STATES), "version": self.version + 1}
        self._append(state, list(state.tasks.items())[-self.limit :])
        self.version += 1
        return {"type": "graph", "graph": self.body}

    def update(self, state: Any) -> dict | None:
        if not self.body:
            return self.rebuild(state)
        tasks, drawn = state.tasks, self.drawn
        # the tasks added since are at the end (a dict keeps insertion order; a key forgotten
        # and submitted again goes to the end too): back from the end to the first drawn one
        # (drawn tasks are held here, so their ids stay theirs)
        new = []
        for key, ts in reversed(tasks.items()):
            if id(ts) in drawn:
                break
            new.append((key, ts))
        new.reverse()
        gone = sum(1 for _, ts in self.tasks if ts.state == "forgotten")
        self.body["total"] = len(tasks)
        if 2 * gone > len(self.tasks) or len(self.tasks) + len(new) > self.limit:
            return self.rebuild(state)  # the newest `limit` tasks
        if not new:
            return None  # forgotten tasks show as such in `states`
        self.version += 1
        self.body["version"] = self.version
        base = len(self.tasks)
        nodes, edges = self._append(state, new)
        return {"type": "graph-add", "version": self.version, "base": base, "nodes": nodes, "edges": edges,
                "total": len(tasks)}  # fmt: skip

    def _append(self, state: Any, new: list[tuple[Any, Any]]) -> tuple[list, list]:
        base = len(self.tasks)
        drawn = self.drawn
        for k, (key, ts) in enumerate(new):
            drawn[id(ts)] = base + k
            self.tasks.append((key, ts))
        get = drawn.get
        deps = [[j for d in ts.dependencies if (j := get(id(d))) is not None] for _, ts in new]
        old = self.body["nodes"]
        depth = [row[3] for row in old] + [-1] * len(new)
        _depths([[]] * base + deps, depth)  # the drawn tasks' depths are known: only the new are walked
        nodes = [[key_text(key), ts.prefix, ts.state, depth[base + k]] for k, (key, ts) in enumerate(new)]
        edges = [[j, base + k] for k, ds in enumerate(deps) for j in ds]
        old.extend(nodes)
        self.body["edges"].extend(edges)
        self.body["total"] = len(state.tasks)
        return nodes, edges

    def states(self, state: Any) -> list[int]:
        index = _STATE_INDEX  # a forgotten task's state is "forgotten": -1
        return [index.get(ts.state, -1) for _, ts in self.tasks]


def graph_json(state: Any, limit: int = GRAPH_LIMIT) -> dict:
    """The task graph of `state` from nothing (`GraphView.body`)."""
    view = GraphView(limit)
    view.rebuild(state)
    return view.body


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
