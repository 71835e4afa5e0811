"""Coordination primitives on shoal vs distributed, in one invocation.

Each backend runs in its own subprocess (`--backend NAME --json`) on
`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`; the parent prints both
figures and the ratio (>1: shoal better).

  lock   uncontended `Lock.acquire()` + `release()` from the client, per pair   [ms]
  queue  100 `Queue.put` then 100 `Queue.get` from the client, per item          [ms]

    python benchmarks/bench_sync.py [--markdown] [--repeat 5]
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import statistics
import time

from _pair import compare


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
    compare(
        __file__,
        __doc__,
        run_child,
        [("lock", "uncontended acquire + release", "ms/pair"), ("queue", "100 put then 100 get", "ms/item")],
        key="ms",
        higher_is_better=False,
        fmt=".3f",
        argv=argv,
    )


if __name__ == "__main__":
    main()
