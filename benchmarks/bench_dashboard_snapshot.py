#!/usr/bin/env python
"""What one dashboard update costs the scheduler's event loop at 10,000 tasks, part by part.

    python benchmarks/bench_dashboard_snapshot.py             # 10,000 tasks, 20 rounds
    python benchmarks/bench_dashboard_snapshot.py --tasks 2000 --rounds 3   # smoke run

An in-process LocalCluster holds a reduction tree over `--tasks / 2` leaves: the leaves in
memory, the tree above them waiting behind worker threads kept busy by gate tasks (so the
states are mixed, as during a computation). Each part of a tick is then timed on the
scheduler's own loop, `--rounds` times (median): the summary every viewer gets, the task
groups (`/groups`), the task graph rebuilt (`/graph`, when its tasks changed) and the
states-only refresh sent between rebuilds, and the JSON encoding of each message. The
parts are built once per tick whatever the number of viewers, so these are the costs per
tick, not per viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def gate(name):
    from shoal import Event

    Event(name).wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()

    from shoal import Client, Event, LocalCluster, _loop
    from shoal.dashboard import graphs, snapshot

    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        dashboard = cluster.scheduler.dashboard
        state = cluster.scheduler.state
        n_leaves = args.tasks // 2
        leaves = client.map(inc, range(n_leaves), key=[f"leaf-{i}" for i in range(n_leaves)])
        client.gather(leaves)
        gates = [client.submit(gate, "bench-gate", key=f"gate-{i}", pure=False) for i in range(4)]
        level, depth, tree = leaves, 0, []
        while len(level) > 1:
            depth += 1
            nxt = [client.submit(add, level[i], level[i + 1], key=f"sum{depth}-{i}") for i in range(0, len(level) - 1, 2)]
            tree += nxt
            level = nxt
        while len(state.tasks) < n_leaves + len(tree) + 4:
            time.sleep(0.05)
        counts = snapshot.summary(state)["totals"]

        def timed(fn) -> tuple[float, object]:
            async def run():
                t0 = time.perf_counter()
                out = fn()
                return time.perf_counter() - t0, out

            return _loop.sync(cluster.loop, run)

        def median(fn) -> tuple[float, object]:
            results = [timed(fn) for _ in range(args.rounds)]
            return statistics.median(t for t, _ in results), results[-1][1]

        metrics = {ws.address: cluster.scheduler.metrics_of(ws) for ws in state.workers.values()}
        rows = []
        t, s = median(lambda: snapshot.summary(state, metrics))
        rows.append(("summary (every viewer: progress, workers)", t))
        update = {"type": "update", "time": time.time(), "summary": s, "stream": [], "skipped": 0, "system": None}
        t, body = median(lambda: json.dumps(update, separators=(",", ":")).encode())
        rows.append((f"  JSON of the update ({len(body) / 1024:.0f} KiB)", t))
        t, g = median(lambda: graphs.groups(state))
        rows.append((f"groups ({len(g)} groups)", t))
        t, body = median(lambda: json.dumps({"type": "groups", "groups": g}, separators=(",", ":")).encode())
        rows.append((f"  JSON of the groups ({len(body) / 1024:.0f} KiB)", t))
        t, full = median(lambda: graphs.graph_json(state, nodes=graphs.graph_tasks(state)))
        rows.append((f"graph rebuilt ({len(full['nodes'])} tasks, {len(full['edges'])} edges)", t))
        t, body = median(lambda: json.dumps({"type": "graph", "graph": full}, separators=(",", ":")).encode())
        rows.append((f"  JSON of the graph ({len(body) / 1024:.0f} KiB)", t))
        nodes = graphs.graph_tasks(state)
        # the usual rebuild: most tasks were drawn before (here all but the last 1%)
        keep = dict(list(nodes.items())[: len(nodes) * 99 // 100])
        before = (keep, graphs.graph_json(state, nodes=keep))
        t, _ = median(lambda: graphs.graph_json(state, nodes=graphs.graph_tasks(state), before=before))
        rows.append(("graph rebuilt, 1% of its tasks new", t))
        t, _ = median(lambda: graphs.same_tasks(state, nodes, len(state.tasks)))
        rows.append(("graph unchanged? (same_tasks)", t))
        t, states = median(lambda: graphs.node_states(nodes))
        rows.append(("graph states (node_states)", t))
        t, body = median(lambda: json.dumps({"type": "graph-states", "states": states}, separators=(",", ":")).encode())
        rows.append((f"  JSON of the states ({len(body) / 1024:.0f} KiB)", t))
        t, _ = median(lambda: dashboard._prefixes())
        print(f"{len(state.tasks)} tasks on the scheduler: {', '.join(f'{n} {k}' for k, n in counts.items() if n)}")
        print(f"median of {args.rounds} rounds on the scheduler's loop:")
        for label, t in rows:
            print(f"  {label:<48} {1000 * t:8.2f} ms")
        by = dict(rows)
        update_ms = 1000 * (by["summary (every viewer: progress, workers)"] + rows[1][1])
        steady = update_ms + 1000 * sum(t for label, t in rows[2:] if not label.startswith(("graph rebuilt", "  JSON of the graph")))
        incremental = 1000 * (by["graph rebuilt, 1% of its tasks new"] + rows[5][1])
        print(f"  tick, /status viewers only                       {update_ms:8.2f} ms")
        print(f"  tick, + /groups and /graph (graph unchanged)     {steady:8.2f} ms")
        print(f"  graph rebuild + its JSON (when tasks change)     {1000 * (rows[4][1] + rows[5][1]):8.2f} ms")
        print(f"  the same, 1% of the tasks new                    {incremental:8.2f} ms")
        print(f"  interval {1000 * dashboard.interval:.0f} ms; the ticker waits >= 50x a tick's cost")
        _loop.sync(cluster.loop, lambda: Event("bench-gate").set())
        client.cancel(tree + gates)
        del leaves


if __name__ == "__main__":
    main()
