"""How promptly timeouts end, shoal vs distributed, in one invocation.

The tests check that a timeout raises (or returns False) and says so; how long past the
timeout it takes is measured here, not asserted in tests (timing depends on the load).
Each backend runs in its own subprocess on `LocalCluster(n_workers=1, processes=False)`:

  variable   `Variable.get(timeout=0.1)` on an unset variable                   [ms past the timeout]
  event      `Event.wait(0.1)` on an unset event                                [ms past the timeout]
  lock       `Lock.acquire(timeout=0.1)` on a held lock                         [ms past the timeout]
  queue      `Queue.get(timeout=0.1)` on an empty queue                         [ms past the timeout]
  refused    `Client(<closed port>, timeout=0.5)` failing                       [ms, total]

    python benchmarks/bench_timeouts.py [--markdown] [--repeat 5]
"""

from __future__ import annotations

import importlib
import json
import socket
import statistics
import time

from _pair import compare

TIMEOUT = 0.1


def _past(call, timeout: float, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        try:
            call()
        except Exception:  # noqa: BLE001 - a timeout error is the expected outcome
            pass
        samples.append((time.perf_counter() - t - timeout) * 1e3)
    return statistics.median(samples)


def run_child(backend: str, repeat: int) -> None:
    mod = importlib.import_module(backend)
    out: dict = {}
    with mod.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with mod.Client(cluster):
            out["variable"] = {"ms": _past(lambda: mod.Variable("bench-v").get(timeout=TIMEOUT), TIMEOUT, repeat)}
            out["event"] = {"ms": _past(lambda: mod.Event("bench-e").wait(TIMEOUT), TIMEOUT, repeat)}
            held = mod.Lock("bench-l")
            held.acquire()
            out["lock"] = {"ms": _past(lambda: mod.Lock("bench-l").acquire(timeout=TIMEOUT), TIMEOUT, repeat)}
            out["queue"] = {"ms": _past(lambda: mod.Queue("bench-q").get(timeout=TIMEOUT), TIMEOUT, repeat)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out["refused"] = {
        "ms": _past(lambda: mod.Client(f"tcp://127.0.0.1:{port}", timeout=0.5, set_as_default=False), 0.0, repeat)
    }
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    rows = [
        ("variable", "Variable.get", "ms past 0.1 s"),
        ("event", "Event.wait", "ms past 0.1 s"),
        ("lock", "Lock.acquire", "ms past 0.1 s"),
        ("queue", "Queue.get", "ms past 0.1 s"),
        ("refused", "Client() refused", "ms"),
    ]
    compare(__file__, __doc__, run_child, rows, "ms", higher_is_better=False, fmt=".1f", argv=argv)


if __name__ == "__main__":
    main()
