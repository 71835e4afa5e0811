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

import importlib
import importlib.util
import json
import statistics
import time

from _pair import compare


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
    compare(
        __file__,
        __doc__,
        run_child,
        [
            ("sequential", "increment().result() in a loop", "calls/s"),
            ("pipelined", "1000 calls sent, then results", "calls/s"),
            ("attribute", "counter.n in a loop", "reads/s"),
        ],
        key="rate",
        higher_is_better=True,
        fmt=",.0f",
        argv=argv,
    )


if __name__ == "__main__":
    main()
