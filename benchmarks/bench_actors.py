"""Actor method calls on shoal vs distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`; the parent prints both
figures and the ratio (>1: shoal better).

  sequential  `counter.increment().result()` in a loop from the client          [calls/s]
  pipelined   1000 `counter.increment()` sent, then every `.result()` collected  [calls/s]
  attribute   `counter.n` read in a loop from the client                         [reads/s]

    python benchmarks/bench_actors.py [--markdown] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time


class Counter:
    n = 0

    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


def run_child(backend: str, repeat: int) -> None:
    mod = importlib.import_module(backend)
    out: dict = {}
    with (
        mod.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        mod.Client(cluster) as client,
    ):
        counter = client.submit(Counter, actor=True).result()
        for _ in range(200):  # warm up
            counter.increment().result()
        n = 2000 if backend == "shoal" else 300
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n):
                counter.increment().result()
            samples.append(n / (time.perf_counter() - t))
        out["sequential"] = {"rate": statistics.median(samples)}
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            futures = [counter.increment() for _ in range(1000)]
            for f in futures:
                f.result()
            samples.append(1000 / (time.perf_counter() - t))
        out["pipelined"] = {"rate": statistics.median(samples)}
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n):
                counter.n  # noqa: B018
            samples.append(n / (time.perf_counter() - t))
        out["attribute"] = {"rate": statistics.median(samples)}
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("shoal", "distributed"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if args.backend:
        run_child(args.backend, args.repeat)
        return
    results: dict = {}
    for backend in ("shoal", "distributed"):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped", file=sys.stderr)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend, "--json", "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=900)
        try:
            results[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception:
            results[backend] = {"sequential": {"error": f"run failed (exit {proc.returncode})"}}
    rows = [
        ("sequential", "increment().result() in a loop", "calls/s"),
        ("pipelined", "1000 calls sent, then results", "calls/s"),
        ("attribute", "counter.n in a loop", "reads/s"),
    ]
    sep = " | " if args.markdown else "  "
    head = ["workload", "metric", "unit", "shoal", "distributed", "ratio (>1: shoal better)"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(f"{h:<16}" for h in head))
    if args.markdown:
        print("|---|---|---|---:|---:|---:|")
    for wl, label, unit in rows:
        s = results.get("shoal", {}).get(wl, {}).get("rate")
        d = results.get("distributed", {}).get(wl, {}).get("rate")
        ratio = f"{s / d:.2f}x" if s and d else "-"
        cells = [wl, label, unit, f"{s:,.0f}" if s else "-", f"{d:,.0f}" if d else "-", ratio]
        print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(f"{c:<16}" for c in cells))
    for backend, res in results.items():
        for wl, r in res.items():
            if "error" in r:
                print(f"{backend} {wl}: {r['error']}")


if __name__ == "__main__":
    main()
