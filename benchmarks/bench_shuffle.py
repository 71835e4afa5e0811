"""All-to-all movement on shoal (its shuffle service) vs distributed (its p2p shuffle),
in one invocation.

Each (backend, workload) runs in a subprocess of its own (`--backend NAME --workload W
--json`) on `LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` with the
workload's memory limit; the data is made on the workers (nothing big crosses the
client) and only row counts come back. The parent prints both figures and the ratio
(>1: shoal better).

Workloads (sizes at --scale 1):
  shuffle_2g  df.shuffle("k") of 1.2 GB (200 partitions x 250k rows, int64 + 2 float64),
              2 x 2 GiB workers                                                 [s]
  shuffle_1g  the same on 2 x 1 GiB workers (data bigger than memory): seconds and
              the peak RSS of the workers                                        [s, MiB]
  set_index   df.set_index("k") of a 1 GB frame (170 x 250k rows), 2 x 2 GiB     [s]
  merge       merge of two 1 GB frames on a non-index column, 2 x 2 GiB         [s]
  rechunk     dask.array (N, 1) column chunks -> (1, N) row chunks, 1.6 GB,
              2 x 2 GiB (shoal: its shuffle service; distributed: its p2p)      [s]
  rechunk_tasks  the same with ``array.rechunk.method = "tasks"`` (dask's task
              rechunk on both)                                                   [s]
  serialize   one 6 MB partition split in 200 pieces, each piece round-tripped (dumps +
              loads) and assembled: DataFrames by pickle protocol 5, by Arrow IPC, and
              shoal's bare-array pieces (`Columns`) by pickle 5, in this process   [ms]

    python benchmarks/bench_shuffle.py [--only a,b] [--scale 0.25] [--repeat 3] [--markdown]

--repeat N runs every (workload, backend) N times, the backends alternating, and
reports the best run of each (the machine is shared: single runs differ by 2x).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_collections import PeakRSS  # noqa: E402  (the kernel's exact peak RSS)

WORKLOADS = ("shuffle_2g", "shuffle_1g", "set_index", "merge", "rechunk", "rechunk_tasks", "serialize")
BACKENDS = ("shoal", "distributed")
ROWS = 250_000


def make_partition(i: int, rows: int, keys: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame(
        {"k": rng.integers(0, keys, rows), "x": rng.random(rows), "y": rng.random(rows)}
    )


def frame(nparts: int, rows: int, seed: int = 0):
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    meta = pd.DataFrame({"k": np.array([], dtype="int64"), "x": np.array([], "f8"), "y": np.array([], "f8")})
    keys = nparts * rows
    return dd.from_map(make_partition, [seed * 100_000 + i for i in range(nparts)], rows=rows, keys=keys, meta=meta,
                       enforce_metadata=False)  # fmt: skip


def _cluster(backend: str, memory_limit: str):
    mod = __import__(backend)
    cluster = mod.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                               dashboard_address=None)  # fmt: skip
    return cluster, mod.Client(cluster)


def _worker_pids(client) -> list[int]:
    return list(client.run(os.getpid).values())


def _time(f) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def wl_shuffle(backend: str, scale: float, memory_limit: str) -> dict:
    nparts = max(int(200 * scale), 4)
    cluster, client = _cluster(backend, memory_limit)
    with cluster, client:
        df = frame(nparts, ROWS)
        with PeakRSS(_worker_pids(client)) as peak:
            secs, rows = _time(lambda: int(df.shuffle("k").map_partitions(len).compute().sum()))
        assert rows == nparts * ROWS, rows
        return {"seconds": secs, "rows": rows, "peak_worker_mib": max(peak.peak.values()) / 2**20}


def wl_set_index(backend: str, scale: float) -> dict:
    nparts = max(int(170 * scale), 4)
    cluster, client = _cluster(backend, "2 GiB")
    with cluster, client:
        df = frame(nparts, ROWS)
        secs, rows = _time(lambda: int(df.set_index("k").map_partitions(len).compute().sum()))
        assert rows == nparts * ROWS, rows
        return {"seconds": secs, "rows": rows}


def wl_merge(backend: str, scale: float) -> dict:
    nparts = max(int(170 * scale), 4)
    cluster, client = _cluster(backend, "2 GiB")
    with cluster, client:
        left = frame(nparts, ROWS, seed=1)
        right = frame(nparts, ROWS, seed=2).rename(columns={"x": "x2", "y": "y2"})
        secs, rows = _time(lambda: int(left.merge(right, on="k").map_partitions(len).compute().sum()))
        return {"seconds": secs, "rows": rows}


def wl_rechunk(backend: str, scale: float, method: str | None = None) -> dict:
    import dask
    import dask.array as da

    n = int(14_000 * scale**0.5)  # n * n * 8 B = 1.6 GB at scale 1
    cluster, client = _cluster(backend, "2 GiB")
    with cluster, client, dask.config.set({"array.rechunk.method": method}):
        x = da.random.default_rng(0).random((n, n), chunks=(n, 1 + n // 100))
        y = x.rechunk((1 + n // 100, n))
        secs, total = _time(lambda: float(y.sum().compute()))
        return {"seconds": secs, "n": n}


def wl_serialize(scale: float) -> dict:
    """Split one partition into 200 pieces and round-trip them (dumps + loads +
    assembly of one output from all of them) in each form."""
    import pickle

    import pyarrow as pa
    from dask.dataframe.shuffle import shuffle_group

    from shoal.shuffle.split import assemble_frame, split_frame, unpack_pieces

    df = make_partition(0, ROWS, 10**9)
    df["_partitions"] = df["k"] % 200
    meta = df.iloc[:0]
    out = {}
    for name, split, dump, load, assemble in (
        ("pickle5_frames", lambda: shuffle_group(df, "_partitions", 0, 200, 200, False, 200), _pickle5,
         lambda b: pickle.loads(b[0], buffers=b[1]), lambda ps: assemble_frame(ps, meta, False)),
        ("arrow_ipc_frames", lambda: shuffle_group(df, "_partitions", 0, 200, 200, False, 200),
         lambda p: _arrow_dump(pa, p), lambda b: _arrow_load(pa, b), lambda ps: assemble_frame(ps, meta, False)),
        ("pickle5_columns", lambda: split_frame(df, "_partitions", 200, False)[0], _pickle5,
         lambda b: pickle.loads(b[0], buffers=b[1]), lambda ps: unpack_pieces(ps, meta, False, 0)),
    ):  # fmt: skip
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            pieces = list(split().values())
            back = [load(dump(p)) for p in pieces]
            whole = assemble(back)
            best = min(best, time.perf_counter() - t0)
        assert len(whole) == len(df)
        out[name] = best * 1000
    return out


def _pickle5(p):
    import pickle

    bufs: list = []
    head = pickle.dumps(p, protocol=5, buffer_callback=bufs.append)
    return head, [b.raw() for b in bufs]


def _arrow_dump(pa, p):
    table = pa.Table.from_pandas(p, preserve_index=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _arrow_load(pa, buf):
    return pa.ipc.open_stream(buf).read_all().to_pandas()


def run_child(backend: str, workload: str, scale: float) -> None:
    import dask

    if backend == "distributed":  # its workers start processes of their own (shoal reads no such key)
        dask.config.set({"distributed.worker.daemon": False})
    try:
        if workload == "shuffle_2g":
            res = wl_shuffle(backend, scale, "2 GiB")
        elif workload == "shuffle_1g":
            res = wl_shuffle(backend, scale, "1 GiB")
        elif workload == "set_index":
            res = wl_set_index(backend, scale)
        elif workload == "merge":
            res = wl_merge(backend, scale)
        elif workload == "rechunk":
            res = wl_rechunk(backend, scale)
        elif workload == "rechunk_tasks":
            res = wl_rechunk(backend, scale, "tasks")
        else:
            raise ValueError(workload)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}"[:300]}
    print(json.dumps(res))


ROWS_OUT = [
    ("shuffle_2g", "seconds", "df.shuffle 1.2 GB, 2 x 2 GiB", "s", False),
    ("shuffle_1g", "seconds", "df.shuffle 1.2 GB, 2 x 1 GiB", "s", False),
    ("shuffle_1g", "peak_worker_mib", "  peak worker RSS (limit 1024)", "MiB", False),
    ("set_index", "seconds", "set_index 1 GB", "s", False),
    ("merge", "seconds", "merge 2 x 1 GB on a column", "s", False),
    ("rechunk", "seconds", "rechunk (N,1)->(1,N) 1.6 GB", "s", False),
    ("rechunk_tasks", "seconds", "  the same, method tasks", "s", False),
]


def _run(backend: str, wl: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend, "--workload", wl,
           "--json", "--scale", str(args.scale)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"no answer in {args.timeout:.0f} s"}
    except Exception:
        return {"error": "run failed"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS)
    ap.add_argument("--workload", choices=WORKLOADS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    if args.backend:
        run_child(args.backend, args.workload, args.scale)
        return
    names = [w for w in args.only.split(",") if w]
    results: dict = {b: {} for b in BACKENDS}
    runs: dict = {b: {} for b in BACKENDS}
    for wl in names:
        if wl == "serialize":
            continue
        for i in range(args.repeat):
            order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]  # alternate who goes first
            for backend in order:
                if importlib.util.find_spec(backend) is None:
                    print(f"{backend}: not installed, skipped", file=sys.stderr)
                    continue
                res = _run(backend, wl, args)
                runs[backend].setdefault(wl, []).append(res)
                print(f"{wl} {backend} run {i + 1}: {res}", file=sys.stderr)
    for backend, by_wl in runs.items():
        for wl, rs in by_wl.items():
            ok = [r for r in rs if "error" not in r]
            results[backend][wl] = min(ok, key=lambda r: r.get("seconds", 0)) if ok else rs[-1]
    sep = " | " if args.markdown else "  "
    head = ["workload", "unit", "shoal", "distributed", "ratio (>1: shoal better)"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(f"{h:<30}" for h in head))
    if args.markdown:
        print("|---|---|---:|---:|---:|")
    for wl, key, label, unit, _ in ROWS_OUT:
        if wl not in names:
            continue
        s = results["shoal"].get(wl, {})
        d = results["distributed"].get(wl, {})
        sv, dv = s.get(key), d.get(key)
        ratio = f"{dv / sv:.2f}x" if sv and dv else "-"
        cells = [label, unit, f"{sv:.1f}" if sv else s.get("error", "-"),
                 f"{dv:.1f}" if dv else d.get("error", "-"), ratio]  # fmt: skip
        print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(f"{c:<30}" for c in cells))
    if "serialize" in names:
        ser = wl_serialize(args.scale)
        print("split a 6 MB partition in 200 pieces, dumps + loads each, assemble: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in ser.items()))  # fmt: skip


if __name__ == "__main__":
    main()
