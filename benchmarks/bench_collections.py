"""Dask collections on shoal vs distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` with its client as
dask's default scheduler; the parent prints both figures and the ratio (>1: shoal better).

Workloads:
  array      (x + x.T).sum() for x = da.ones((4000, 4000), chunks=(100, 100))      [s]
  groupby    100-partition dataframe, groupby("key").value.agg(["sum", "mean"])    [s]
  set_index  the same frame, set_index("key") with the task-based shuffle           [s]
  million    N-task graph (chains of `inc` + a final sum) through client.get:
             seconds, tasks/s, and the client+scheduler process's peak RSS growth
             per task, minus what the user's own graph dict costs                  [s, B/task]
  million_sched  the same graph with the scheduler in a process of its own: its RSS
             growth per task alone                                                 [B/task]
  wide       intermediates 4x the workers' memory (1 GiB each), reduced elementwise:
             seconds and each worker's peak RSS                                    [s, MiB]

    python benchmarks/bench_collections.py [--only a,b] [--markdown] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time

WORKLOADS = ("array", "groupby", "set_index", "million", "million_sched", "wide")


def inc(x):
    return x + 1


# ---------------------------------------------------------------------------- child side


def _reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark of `pid` (Linux: /proc/PID/clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm(pid: int) -> int | None:
    """The kernel's peak RSS of `pid` since its last reset (VmHWM), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """The peak RSS of some processes while the block runs: on Linux the kernel's exact
    high-water mark (reset on entry), elsewhere (and as a floor) samples every 20 ms
    (a sampler alone misses short peaks, e.g. a graph being decoded)."""

    def __init__(self, pids: list[int]):
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak = {p.pid: p.memory_info().rss for p in self.procs}
        self.start_rss = dict(self.peak)
        self._exact = {p.pid: _reset_hwm(p.pid) for p in self.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:
                    pass
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for pid, exact in self._exact.items():
            hwm = _hwm(pid) if exact else None
            if hwm is not None:
                self.peak[pid] = max(self.peak[pid], hwm)


def _cluster(backend: str, **kwargs):
    mod = importlib.import_module(backend)
    cluster = mod.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, **kwargs)
    return cluster, mod.Client(cluster)


def _frame():
    import numpy as np
    import pandas as pd
    import dask.dataframe as dd

    n = 2_000_000
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame({"key": rng.integers(0, 1000, n), "value": rng.random(n)})
    return dd.from_pandas(pdf, npartitions=100), pdf


def _n_tasks(dask_scheduler=None) -> int:
    st = getattr(dask_scheduler, "state", None)  # shoal keeps its state machine apart
    return len(st.tasks if hasattr(st, "tasks") else dask_scheduler.tasks)


def _settle(client, timeout: float = 30.0) -> None:
    """Wait (untimed) until the scheduler has forgotten every task, so the next repeat of
    the same graph cannot pick up results the last one still held: releases are
    asynchronous (distributed's set_index 'ran' in 0.07-0.3 s that way)."""
    gc.collect()
    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(_n_tasks) and time.monotonic() < deadline:
        time.sleep(0.01)


def wl_array(client, repeat):
    import dask.array as da

    times = []
    for _ in range(repeat):
        _settle(client)
        x = da.ones((4000, 4000), chunks=(100, 100))
        t = time.perf_counter()
        value = (x + x.T).sum().compute()
        times.append(time.perf_counter() - t)
        assert value == 32e6, value
    return {"seconds": statistics.median(times)}


def wl_groupby(client, repeat):
    ddf, pdf = _frame()
    expected = pdf.groupby("key").value.sum()
    times = []
    for _ in range(repeat):
        _settle(client)
        t = time.perf_counter()
        out = ddf.groupby("key").value.agg(["sum", "mean"]).compute()
        times.append(time.perf_counter() - t)
        assert abs(out["sum"].sort_index() - expected).max() < 1e-6
    return {"seconds": statistics.median(times)}


def wl_set_index(client, repeat):
    import dask

    ddf, pdf = _frame()
    times = []
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        for _ in range(repeat):
            _settle(client)
            t = time.perf_counter()
            rows = ddf.set_index("key").map_partitions(len).compute().sum()
            times.append(time.perf_counter() - t)
            assert rows == len(pdf), rows
    return {"seconds": statistics.median(times)}


def _chains(n_tasks: int) -> dict:
    length = 1000
    n_chains = max(1, n_tasks // length)
    dsk = {}
    for i in range(n_chains):
        dsk[("x", i, 0)] = (inc, i)
        for j in range(1, length):
            dsk[("x", i, j)] = (inc, ("x", i, j - 1))
    dsk["total"] = (sum, [("x", i, length - 1) for i in range(n_chains)])
    return dsk


def wl_million(client, repeat, n_tasks):
    gc.collect()
    with PeakRSS([os.getpid()]) as graph_only:
        dsk = _chains(n_tasks)
    graph_bytes = graph_only.peak[os.getpid()] - graph_only.start_rss[os.getpid()]
    n = len(dsk)
    with PeakRSS([os.getpid()]) as rss:
        t = time.perf_counter()
        result = client.get(dsk, "total")
        seconds = time.perf_counter() - t
    expected = sum(i + 1000 for i in range(n // 1000))  # chain i ends at i + 1000
    assert result == expected, (result, expected)
    growth = rss.peak[os.getpid()] - rss.start_rss[os.getpid()]
    return {
        "tasks": n,
        "seconds": seconds,
        "tasks_per_s": n / seconds,
        "bytes_per_task": growth / n,
        "graph_dict_bytes_per_task": graph_bytes / n,
    }


_DIST_SCHEDULER = """
import asyncio
from distributed import Scheduler
async def main():
    async with Scheduler(host="127.0.0.1", port=0, dashboard=False, dashboard_address=None) as s:
        print(s.address, flush=True)
        await s.finished()
asyncio.run(main())
"""


def wl_million_sched(backend, n_tasks):
    """The million-task graph with the scheduler in a process of its own, whose RSS
    alone is sampled: the scheduler's own memory per task."""
    import secrets

    mod = importlib.import_module(backend)
    env = dict(os.environ)
    if backend == "shoal":
        secret = secrets.token_bytes(32)
        env["SHOAL_SECRET"] = secret.hex()
        sched_cmd = [sys.executable, "-m", "shoal.scheduler"]
        worker_cmd = [sys.executable, "-m", "shoal.worker", "{addr}", "--nthreads", "1"]
        client_kwargs = {"security": mod.Security(secret)}
    else:
        sched_cmd = [sys.executable, "-c", _DIST_SCHEDULER]
        worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker", "{addr}", "--nthreads", "1",
                      "--no-nanny", "--no-dashboard"]  # fmt: skip
        client_kwargs = {}
    sched = subprocess.Popen(sched_cmd, env=env, stdout=subprocess.PIPE, text=True)
    workers = []
    try:
        addr = sched.stdout.readline().strip()
        workers = [subprocess.Popen([a.format(addr=addr) for a in worker_cmd], env=env, stderr=subprocess.DEVNULL)
                   for _ in range(2)]  # fmt: skip
        client = mod.Client(addr, **client_kwargs)
        try:
            client.wait_for_workers(2, timeout=60)
            dsk = _chains(n_tasks)
            n = len(dsk)
            gc.collect()
            with PeakRSS([sched.pid]) as rss:
                t = time.perf_counter()
                result = client.get(dsk, "total")
                seconds = time.perf_counter() - t
            assert result == sum(i + 1000 for i in range(n // 1000)), result
        finally:
            client.close()
        growth = rss.peak[sched.pid] - rss.start_rss[sched.pid]
        return {"tasks": n, "seconds": seconds, "tasks_per_s": n / seconds, "bytes_per_task": growth / n}
    finally:
        for p in [*workers, sched]:
            p.terminate()
        for p in [*workers, sched]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def wl_wide(backend, repeat):
    import dask.array as da

    limit = 2**30
    cluster, client = _cluster(backend, memory_limit=limit)
    try:
        pids = list(client.run(os.getpid).values())
        x = da.random.random((1024, 1_048_576), chunks=(8, 1_048_576))  # 8 GiB = 4x 2 x 1 GiB
        with PeakRSS(pids) as rss:
            t = time.perf_counter()
            value = x.sum(axis=0).sum().compute()
            seconds = time.perf_counter() - t
        assert 0.45 * x.size < value < 0.55 * x.size
        peak = max(rss.peak.values())
        return {"seconds": seconds, "peak_worker_mib": peak / 2**20, "limit_mib": limit / 2**20,
                "under_limit": peak < limit, "data_gib": x.nbytes / 2**30}  # fmt: skip
    finally:
        client.close()
        cluster.close()


def run_child(backend: str, names: list[str], repeat: int, million_n: int) -> None:
    out = {}
    needs_cluster = [n for n in names if n not in ("wide", "million_sched")]
    # million first: memory freed by earlier workloads would be reused and hide growth
    needs_cluster.sort(key=lambda n: n != "million")
    if needs_cluster:
        cluster, client = _cluster(backend)
        try:
            for name in needs_cluster:
                t = time.perf_counter()
                try:
                    if name == "million":
                        out[name] = wl_million(client, 1, million_n)
                    else:
                        out[name] = globals()[f"wl_{name}"](client, repeat)
                except Exception as e:  # report and go on with the other workloads
                    out[name] = {"error": f"{type(e).__name__}: {e}"}
                print(f"[{backend}] {name}: done in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
        finally:
            client.close()
            cluster.close()
    if "million_sched" in names:
        try:
            out["million_sched"] = wl_million_sched(backend, million_n)
        except Exception as e:
            out["million_sched"] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[{backend}] million_sched: done", file=sys.stderr, flush=True)
    if "wide" in names:
        try:
            out["wide"] = wl_wide(backend, 1)
        except Exception as e:
            out["wide"] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[{backend}] wide: done", file=sys.stderr, flush=True)
    print(json.dumps(out))


# ---------------------------------------------------------------------------- parent side

ROWS = [
    # workload, field, label, unit, better
    ("array", "seconds", "(x + x.T).sum(), 4000² / 100²", "s", "lower"),
    ("groupby", "seconds", "groupby-agg, 100 partitions", "s", "lower"),
    ("set_index", "seconds", "set_index (task shuffle), 100 partitions", "s", "lower"),
    ("million", "tasks", "graph size", "tasks", None),
    ("million", "seconds", "submit + compute + gather", "s", None),
    ("million", "tasks_per_s", "throughput", "tasks/s", "higher"),
    ("million", "bytes_per_task", "client+scheduler peak RSS growth", "B/task", "lower"),
    ("million", "graph_dict_bytes_per_task", "of which the user's graph dict", "B/task", None),
    ("million_sched", "tasks", "graph size, scheduler in its own process", "tasks", None),
    ("million_sched", "tasks_per_s", "throughput", "tasks/s", "higher"),
    ("million_sched", "bytes_per_task", "scheduler process peak RSS growth", "B/task", "lower"),
    ("wide", "seconds", "8 GiB of intermediates, 2×1 GiB workers", "s", "lower"),
    ("wide", "peak_worker_mib", "peak worker RSS", "MiB", "lower"),
    ("wide", "under_limit", "peak under the 1 GiB limit", "", None),
]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int, float)):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return str(v)


def table(results: dict, markdown: bool) -> str:
    lines = []
    head = ("workload", "metric", "unit", "shoal", "distributed", "ratio (>1: shoal better)")
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---|---|---|---:|---:|---:|")
    else:
        lines.append("  ".join(f"{h:<22}" for h in head))
    for wl, field, label, unit, better in ROWS:
        s = results.get("shoal", {}).get(wl, {})
        d = results.get("distributed", {}).get(wl, {})
        sv, dv = s.get(field), d.get(field)
        ratio = "-"
        if better and isinstance(sv, (int, float)) and isinstance(dv, (int, float)) and sv and dv:
            ratio = f"{(dv / sv if better == 'lower' else sv / dv):.2f}x"
        row = (wl, label, unit, _fmt(sv), _fmt(dv), ratio)
        lines.append(("| " + " | ".join(row) + " |") if markdown else "  ".join(f"{c:<22}" for c in row))
    for backend, res in results.items():
        for wl, r in res.items():
            if "error" in r:
                lines.append(f"\n{backend} {wl} failed: {r['error']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("shoal", "distributed"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--million-n", type=int, default=1_000_000, help="graph size for shoal")
    ap.add_argument("--distributed-million-n", type=int, default=200_000,
                    help="graph size for distributed (1M takes it too long; per-task figures compare)")  # fmt: skip
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workloads: {sorted(unknown)}")
    if args.backend:
        n = args.million_n if args.backend == "shoal" else args.distributed_million_n
        run_child(args.backend, names, args.repeat, n)
        return
    results = {}
    for backend in ("shoal", "distributed"):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped", file=sys.stderr)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend, "--json", "--only", ",".join(names),
               "--repeat", str(args.repeat), "--million-n", str(args.million_n),
               "--distributed-million-n", str(args.distributed_million_n)]  # fmt: skip
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=3600)
        try:
            results[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception:
            results[backend] = {n: {"error": f"run failed (exit {proc.returncode})"} for n in names}
    print(table(results, args.markdown))


if __name__ == "__main__":
    main()
