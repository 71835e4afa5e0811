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
        def fresh() -> graphs.GraphView:
            view = graphs.GraphView()
            view.rebuild(state)
            return view

        t, view = median(fresh)
        full = view.body
        rows.append((f"graph from nothing ({len(full['nodes'])} tasks, {len(full['edges'])} edges)", t))
        t, body = median(lambda: json.dumps({"type": "graph", "graph": full}, separators=(",", ":")).encode())
        rows.append((f"  JSON of the graph ({len(body) / 1024:.0f} KiB)", t))
        t, _ = median(lambda: view.update(state))
        rows.append(("graph update, nothing new (a scan of the tasks)", t))

        # the usual change: 1% of the tasks are new since the last look
        def one_percent_new():
            partial = graphs.GraphView()
            partial.body = {"nodes": [], "edges": [], "total": 0, "states": [], "version": 0}
            partial._append(state, list(state.tasks.items())[: len(state.tasks) * 99 // 100])
            t0 = time.perf_counter()
            change = partial.update(state)
            return time.perf_counter() - t0, change

        async def on_loop():
            return one_percent_new()

        results = [_loop.sync(cluster.loop, on_loop) for _ in range(args.rounds)]
        change = results[-1][1]
        rows.append((f"graph update, 1% new ({len(change['nodes'])} tasks appended)", statistics.median(r[0] for r in results)))
        t, body = median(lambda: json.dumps(change, separators=(",", ":")).encode())
        rows.append((f"  JSON of the change ({len(body) / 1024:.0f} KiB)", t))
        t, states = median(lambda: view.states(state))
        rows.append(("graph states", t))
        t, body = median(lambda: json.dumps({"type": "graph-states", "states": states}, separators=(",", ":")).encode())
        rows.append((f"  JSON of the states ({len(body) / 1024:.0f} KiB)", t))
        t, _ = median(lambda: dashboard._prefixes())
        print(f"{len(state.tasks)} tasks on the scheduler: {', '.join(f'{n} {k}' for k, n in counts.items() if n)}")
        print(f"median of {args.rounds} rounds on the scheduler's loop:")
        for label, t in rows:
            print(f"  {label:<48} {1000 * t:8.2f} ms")
        by = {label.split(" (")[0].strip(): t for label, t in rows}
        ms = {k: 1000 * v for k, v in by.items()}
        status = ms["summary"] + ms["JSON of the update"]
        steady = status + ms["groups"] + ms["JSON of the groups"] + ms["graph update, nothing new"] + ms["graph states"] + ms["JSON of the states"]
        print(f"  tick, /status viewers only                       {status:8.2f} ms")
        print(f"  tick, + /groups and /graph (nothing new)         {steady:8.2f} ms")
        print(f"  the same with 1% new tasks                       "
              f"{steady - ms['graph update, nothing new'] + ms['graph update, 1% new'] + ms['JSON of the change']:8.2f} ms")
        print(f"  a graph from nothing + its JSON (the first viewer, or half the tasks forgotten) "
              f"{ms['graph from nothing'] + ms['JSON of the graph']:8.2f} ms")
        print(f"  interval {1000 * dashboard.interval:.0f} ms; the ticker waits >= 50x a tick's cost")
        _loop.sync(cluster.loop, lambda: Event("bench-gate").set())
        client.cancel(tree + gates)
        del leaves


if __name__ == "__main__":
    main()
