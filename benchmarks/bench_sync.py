"""Coordination primitives on shoal vs distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`; the parent prints both
figures and the ratio (>1: shoal better).

  lock   uncontended `Lock.acquire()` + `release()` from the client, per pair   [ms]
  queue  100 `Queue.put` then 100 `Queue.get` from the client, per item          [ms]

    python benchmarks/bench_sync.py [--markdown] [--repeat 5]
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


def run_child(backend: str, repeat: int) -> None:
    mod = importlib.import_module(backend)
    out: dict = {}
    with mod.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with mod.Client(cluster):
            lock = mod.Lock("bench-lock")
            for _ in range(20):  # warm up
                lock.acquire()
                lock.release()
            samples = []
            for _ in range(repeat):
                t = time.perf_counter()
                for _ in range(200):
                    lock.acquire()
                    lock.release()
                samples.append((time.perf_counter() - t) / 200 * 1e3)
            out["lock"] = {"ms": statistics.median(samples)}
            if hasattr(mod, "Queue"):
                q = mod.Queue("bench-queue")
                for i in range(10):  # warm up
                    q.put(i)
                    q.get()
                samples = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    for i in range(100):
                        q.put(i)
                    got = [q.get() for _ in range(100)]
                    samples.append((time.perf_counter() - t) / 100 * 1e3)
                    assert got == list(range(100)), got[:5]
                out["queue"] = {"ms": statistics.median(samples)}
            else:
                out["queue"] = {"error": f"{backend} has no Queue"}
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
            results[backend] = {"lock": {"error": f"run failed (exit {proc.returncode})"}}
    rows = [("lock", "uncontended acquire + release", "ms/pair"), ("queue", "100 put then 100 get", "ms/item")]
    sep = " | " if args.markdown else "  "
    head = ["workload", "metric", "unit", "shoal", "distributed", "ratio (>1: shoal better)"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(f"{h:<16}" for h in head))
    if args.markdown:
        print("|---|---|---|---:|---:|---:|")
    for wl, label, unit in rows:
        s = results.get("shoal", {}).get(wl, {}).get("ms")
        d = results.get("distributed", {}).get(wl, {}).get("ms")
        ratio = f"{d / s:.2f}x" if s and d else "-"
        cells = [wl, label, unit, f"{s:.3f}" if s else "-", f"{d:.3f}" if d else "-", ratio]
        print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(f"{c:<16}" for c in cells))
    for backend, res in results.items():
        for wl, r in res.items():
            if "error" in r:
                print(f"{backend} {wl}: {r['error']}")


if __name__ == "__main__":
    main()
