"""Data bigger than the workers' memory, on shoal vs distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`; the parent prints
both figures and the ratio (>1: shoal better). Peak RSS is the kernel's high-water mark
of each worker process (see `bench_collections.PeakRSS`).

Workloads:
  persist    x = da.random.random((20000, 10000), chunks=1000²) persisted (1.6 GB) on
             2 x 600 MiB workers, then x.sum(): seconds for each, spilled bytes, disk
             write/read seconds, peak worker RSS                                  [s]
  transpose  (x + x.T).mean() for a 40000² float64 array (12.8 GB) in 1000² chunks on
             2 x 1 GiB workers: seconds, peak worker RSS, spilled bytes           [s]

    python benchmarks/bench_memory.py [--only persist,transpose] [--repeat N] [--markdown]

With --repeat N the two backends run alternately N times each (shoal, distributed,
shoal, ...) and each figure is the median of its runs (a peak is "under the limit"
only if it was in every run): on a shared machine, alternation spreads the load over
both backends alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_collections import PeakRSS  # noqa: E402

WORKLOADS = ("persist", "transpose")


def _spill_figures(dask_worker=None) -> dict:
    """Bytes written to disk and seconds spent writing/reading, as each backend counts."""
    metrics = getattr(dask_worker, "metrics", None)
    if callable(metrics):  # shoal
        spill = metrics().get("spill") or {}
        return {"bytes": spill.get("bytes", 0), "write_s": spill.get("write_seconds", 0.0),
                "read_s": spill.get("read_seconds", 0.0)}  # fmt: skip
    data = dask_worker.data  # distributed's SpillBuffer
    cm = getattr(data, "cumulative_metrics", {})
    return {"bytes": cm.get(("disk-write", "bytes"), 0), "write_s": cm.get(("disk-write", "seconds"), 0.0),
            "read_s": cm.get(("disk-read", "seconds"), 0.0)}  # fmt: skip


def _sum_spill(client) -> dict:
    per = client.run(_spill_figures)
    return {k: sum(v[k] for v in per.values()) for k in ("bytes", "write_s", "read_s")}


def _cluster(backend: str, memory_limit: str):
    mod = importlib.import_module(backend)
    cluster = mod.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=memory_limit
    )
    return cluster, mod.Client(cluster)


def wl_persist(backend: str) -> dict:
    import dask.array as da

    mod = importlib.import_module(backend)
    cluster, client = _cluster(backend, "600MiB")
    try:
        pids = list(client.run(os.getpid).values())
        x = da.random.random((20000, 10000), chunks=(1000, 1000))
        with PeakRSS(pids) as rss:
            t = time.perf_counter()
            x = x.persist()
            mod.wait(x, timeout=600)
            persist = time.perf_counter() - t
            t = time.perf_counter()
            total = x.sum().compute()
            reduce = time.perf_counter() - t
        assert 0.45 * x.size < total < 0.55 * x.size, total
        spill = _sum_spill(client)
        limit = 600 * 2**20
        peak = max(rss.peak.values())
        return {
            "seconds": persist + reduce, "persist_s": persist, "sum_s": reduce, "peak_worker_mib": peak / 2**20,
            "under_limit": peak < limit, "spilled_mib": spill["bytes"] / 2**20, "disk_write_s": spill["write_s"],
            "disk_read_s": spill["read_s"],
        }  # fmt: skip
    finally:
        client.close()
        cluster.close()


def wl_transpose(backend: str) -> dict:
    import dask.array as da

    cluster, client = _cluster(backend, "1GiB")
    try:
        pids = list(client.run(os.getpid).values())
        x = da.random.random((40000, 40000), chunks=(1000, 1000))  # 12.8 GB
        with PeakRSS(pids) as rss:
            t = time.perf_counter()
            mean = (x + x.T).mean().compute()
            seconds = time.perf_counter() - t
        assert 0.95 < mean < 1.05, mean
        spill = _sum_spill(client)
        peak = max(rss.peak.values())
        return {
            "seconds": seconds, "peak_worker_mib": peak / 2**20, "under_limit": peak < 2**30,
            "spilled_mib": spill["bytes"] / 2**20, "disk_write_s": spill["write_s"], "disk_read_s": spill["read_s"],
        }  # fmt: skip
    finally:
        client.close()
        cluster.close()


ROWS = [
    ("persist", "seconds", "persist 1.6 GB on 2×600 MiB + sum", "s", "lower"),
    ("persist", "persist_s", "of which persist", "s", "lower"),
    ("persist", "sum_s", "of which x.sum()", "s", "lower"),
    ("persist", "peak_worker_mib", "peak worker RSS", "MiB", "lower"),
    ("persist", "under_limit", "peak under the 600 MiB limit", "", None),
    ("persist", "spilled_mib", "written to disk", "MiB", None),
    ("persist", "disk_write_s", "disk write time (all workers)", "s", None),
    ("persist", "disk_read_s", "disk read time (all workers)", "s", None),
    ("transpose", "seconds", "(x + x.T).mean(), 12.8 GB on 2×1 GiB", "s", "lower"),
    ("transpose", "peak_worker_mib", "peak worker RSS", "MiB", "lower"),
    ("transpose", "under_limit", "peak under the 1 GiB limit", "", None),
    ("transpose", "spilled_mib", "written to disk", "MiB", None),
    ("transpose", "disk_write_s", "disk write time (all workers)", "s", None),
    ("transpose", "disk_read_s", "disk read time (all workers)", "s", None),
]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _medians(runs: list[dict], names: list[str]) -> dict:
    """One result per workload from several runs: the median of each number, `all` of
    each flag; a workload that failed in any run reports that run's error."""
    out: dict = {}
    for name in names:
        per = [r.get(name, {"error": "missing"}) for r in runs]
        failed = [p for p in per if "error" in p]
        if failed:
            out[name] = failed[0]
            continue
        merged = {}
        for field in per[0]:
            values = [p[field] for p in per]
            merged[field] = all(values) if isinstance(values[0], bool) else statistics.median(values)
        out[name] = merged
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("shoal", "distributed"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs per backend; medians are reported")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    if set(names) - set(WORKLOADS):
        ap.error(f"unknown workloads: {sorted(set(names) - set(WORKLOADS))}")
    if args.backend:
        out = {}
        for name in names:
            try:
                out[name] = globals()[f"wl_{name}"](args.backend)
            except Exception as e:  # report and go on
                out[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"[{args.backend}] {name}: {out[name]}", file=sys.stderr, flush=True)
        print(json.dumps(out))
        return
    runs: dict = {}
    for _ in range(max(args.repeat, 1)):
        for backend in ("shoal", "distributed"):
            if importlib.util.find_spec(backend) is None:
                print(f"{backend}: not installed, skipped", file=sys.stderr)
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend, "--json", "--only", ",".join(names)]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=3600)
            try:
                runs.setdefault(backend, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
            except Exception:
                runs.setdefault(backend, []).append({n: {"error": f"run failed (exit {proc.returncode})"} for n in names})
    results = {backend: _medians(rs, names) for backend, rs in runs.items()}
    sep = " | " if args.markdown else "  "
    head = ["workload", "metric", "unit", "shoal", "distributed", "ratio (>1: shoal better)"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(f"{h:<20}" for h in head))
    if args.markdown:
        print("|---|---|---|---:|---:|---:|")
    for wl, field, label, unit, better in ROWS:
        s = results.get("shoal", {}).get(wl, {}).get(field)
        d = results.get("distributed", {}).get(wl, {}).get(field)
        ratio = "-"
        if better and isinstance(s, (int, float)) and isinstance(d, (int, float)) and s and d:
            ratio = f"{(d / s if better == 'lower' else s / d):.2f}x"
        cells = [wl, label, unit, _fmt(s), _fmt(d), ratio]
        print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(f"{c:<20}" for c in cells))
    for backend, res in results.items():
        for wl, r in res.items():
            if "error" in r:
                print(f"\n{backend} {wl} failed: {r['error']}")


if __name__ == "__main__":
    main()
