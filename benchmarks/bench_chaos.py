"""Chaos: wall time of a shuffle + reduction graph with and without random SIGKILLs of
worker processes, on shoal and on distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=W, threads_per_worker=1, processes=True)` (workers supervised by
nannies, which restart killed ones). The workload is a task-based shuffle of a random
frame over P partitions (about 40 tasks per partition) followed by a groupby-sum tree
reduction, persisted then computed. Each backend runs it once without kills, then once
while a thread SIGKILLs K random worker processes, the k-th once the scheduler has made
k/(K+2) of the calm run's transitions. Reported per backend: both wall times, the extra
time, and whether the result was bit-identical to dask's local scheduler, with every
future finished and no KilledWorker (default allowed-failures).

    python benchmarks/bench_chaos.py [--partitions 400] [--kills 6] [--workers 3] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# the workload the chaos tests check (tests/chaos_functions.py), so both measure one thing
sys.path.insert(0, os.path.join(ROOT, "tests"))
from chaos_functions import reduce_workload, shuffle_workload  # noqa: E402


def transitions(backend: str, cluster) -> int:
    if backend == "shoal":
        return cluster.scheduler.state.transition_counter
    return cluster.scheduler.transition_counter


def forget_all(backend: str, cluster, timeout: float = 60) -> None:
    """Wait until the scheduler has forgotten every task, so the next run computes
    everything again instead of reusing results still held from the previous one."""
    tasks = cluster.scheduler.state.tasks if backend == "shoal" else cluster.scheduler.tasks
    deadline = time.monotonic() + timeout
    while tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    if tasks:
        raise RuntimeError(f"{len(tasks)} tasks still held {timeout} s after the run")


def child(backend: str, nparts: int, kills: int, n_workers: int) -> dict:
    import pandas as pd

    mod = importlib.import_module(backend)
    graph_tasks = len(dict(reduce_workload(shuffle_workload(nparts)).__dask_graph__()))
    expected = reduce_workload(shuffle_workload(nparts)).compute(scheduler="sync")
    out: dict = {"backend": backend, "tasks": graph_tasks, "workers": n_workers, "kills": kills}
    kwargs = {"dashboard_address": None} if backend == "distributed" else {}
    with (
        mod.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, **kwargs) as cluster,
        mod.Client(cluster) as c,
    ):
        calm_transitions = 0
        for label, n_kills in (("calm", 0), ("chaos", kills)):
            stop = threading.Event()
            killed: list[int] = []
            start_count = transitions(backend, cluster)

            def worker_pids(killed: list[int]) -> list[int]:
                try:
                    return [p for p in c.run(os.getpid).values() if p not in killed]
                except Exception:  # noqa: BLE001  (a worker died under the call: none this time)
                    return []

            def killer(n_kills=n_kills, start_count=start_count, killed=killed, stop=stop, calm=calm_transitions):
                rng = random.Random(n_kills)
                for k in range(1, n_kills + 1):
                    threshold = start_count + calm * k // (n_kills + 2)
                    pids: list[int] = []
                    while not stop.is_set():
                        if transitions(backend, cluster) >= threshold:
                            pids = worker_pids(killed)
                            if len(pids) >= 2:  # never kill the last worker
                                break
                        stop.wait(0.02)
                    else:
                        return
                    pid = rng.choice(pids)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

            thread = threading.Thread(target=killer, daemon=True)
            start = time.perf_counter()
            thread.start()
            error = None
            shuffled = None
            try:
                shuffled = c.persist(shuffle_workload(nparts))
                frame = c.compute(reduce_workload(shuffled)).result()
                lost = sum(f.status != "finished" for f in mod.futures_of(shuffled))
                identical = True
                try:
                    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
                except AssertionError:
                    identical = False
            except Exception as e:  # noqa: BLE001  (KilledWorker and the like: reported, not raised)
                error, lost, identical = f"{type(e).__name__}: {e}"[:200], None, False
            elapsed = time.perf_counter() - start
            stop.set()
            thread.join()
            if label == "calm":
                calm_transitions = transitions(backend, cluster) - start_count
            out[label] = {
                "seconds": elapsed,
                "killed": len(killed),
                "identical": identical,
                "lost": lost,
                "error": error,
            }
            del shuffled
            forget_all(backend, cluster)
            c.wait_for_workers(n_workers, timeout=120)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="both", choices=["both", "shoal", "distributed"])
    p.add_argument("--partitions", type=int, default=400)
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--json", action="store_true", help="(child) print one JSON record")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.json:
        print(json.dumps(child(args.backend, args.partitions, args.kills, args.workers)))
        return
    backends = ["shoal", "distributed"] if args.backend == "both" else [args.backend]
    if "distributed" in backends:
        try:
            importlib.import_module("distributed")
        except ImportError:
            print("distributed is not installed: benchmarking shoal alone")
            backends.remove("distributed")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    rows = []
    for backend in backends:
        cmd = [sys.executable, __file__, "--backend", backend, "--json", "--partitions", str(args.partitions),
               "--kills", str(args.kills), "--workers", str(args.workers)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            print(f"{backend}: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(lines[-1]))
    head = ["backend", "tasks", "workers", "no kills [s]", "kills", "with kills [s]", "extra [s]", "outcome"]
    table = []
    for r in rows:
        calm, chaos = r["calm"], r["chaos"]
        if chaos["error"]:
            outcome = chaos["error"]
        else:
            good = chaos["identical"] and calm["identical"] and not chaos["lost"]
            outcome = (
                "bit-identical, no future lost" if good else f"identical={chaos['identical']} lost={chaos['lost']}"
            )
        table.append([r["backend"], f"{r['tasks']:,}", str(r["workers"]), f"{calm['seconds']:.2f}", str(chaos["killed"]),
                      f"{chaos['seconds']:.2f}", f"{chaos['seconds'] - calm['seconds']:+.2f}", outcome])  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *table)]
        for row in [head, *table]:
            print("  ".join(x.ljust(w) for x, w in zip(row, widths)))


if __name__ == "__main__":
    main()
