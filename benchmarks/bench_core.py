#!/usr/bin/env python
"""Core benchmarks: shoal vs. dask ``distributed`` on the same machine, same run.

One invocation runs every workload against both backends, each backend in its
own subprocess, and prints a comparison table::

    python benchmarks/bench_core.py                     # both backends, table
    python benchmarks/bench_core.py --markdown          # markdown for docs/benchmarks.md
    python benchmarks/bench_core.py --only roundtrip,map --repeat 5
    python benchmarks/bench_core.py --quick             # smoke run, small sizes
    python benchmarks/bench_core.py --backend shoal     # one backend only (still a subprocess)

Internally the parent runs ``python benchmarks/bench_core.py --backend NAME --json``
once per backend; that child prints one JSON object per line (records ``meta``,
``workload``, ``error``, ``done``) and the parent collects them.

``distributed`` is a development-only dependency: when it is not installed the
script benchmarks shoal alone and says so.

Ratio convention: ``ratio`` is *how many times better shoal is*; > 1 means shoal
is better, < 1 means shoal is worse.  For times (lower is better) it is
distributed/shoal, for rates (higher is better) it is shoal/distributed.

See benchmarks/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

BACKENDS = ("shoal", "distributed")
CLUSTER_WORKLOADS = ("roundtrip", "map", "tree", "transfer")
WORKLOADS = CLUSTER_WORKLOADS + ("startup",)

# Sizes: (full, quick)
SIZES = {
    "full": {
        "roundtrip_warmup": 20,
        "roundtrip_calls": 200,
        "map_tasks": 20_000,
        "tree_leaves": 8192,
        "transfer_elems": 25_000_000,  # 200 MB of float64
    },
    "quick": {
        "roundtrip_warmup": 5,
        "roundtrip_calls": 50,
        "map_tasks": 2_000,
        "tree_leaves": 1024,
        "transfer_elems": 2_500_000,  # 20 MB of float64
    },
}

CLUSTER_KWARGS = dict(
    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
)

# Metric metadata: key -> (label, unit, better); better in {"lower", "higher", "ref"}.
METRICS = {
    "roundtrip": [
        ("median_ms", "latency median", "ms", "lower"),
        ("p10_ms", "latency p10", "ms", "lower"),
        ("p90_ms", "latency p90", "ms", "lower"),
    ],
    "map": [
        ("tasks_per_s", "throughput", "tasks/s", "higher"),
        ("seconds", "wall time", "s", "lower"),
    ],
    "tree": [
        ("seconds", "wall time", "s", "lower"),
        ("tasks_per_s", "throughput", "tasks/s", "higher"),
    ],
    "transfer": [
        ("seconds", "np.sum on other worker", "s", "lower"),
        ("gb_per_s", "effective bandwidth", "GB/s", "higher"),
        ("local_sum_ms", "local np.sum (reference)", "ms", "ref"),
    ],
    "startup": [
        ("seconds", "cluster up + 1st result", "s", "lower"),
        ("import_s", "import (reference)", "s", "ref"),
        ("process_s", "whole process (reference)", "s", "ref"),
    ],
}


# ---------------------------------------------------------------------------
# Task functions.  Module level, so that cloudpickle ships them by value
# (this file runs as __main__) to both backends' worker processes.
# ---------------------------------------------------------------------------


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def worker_pid():
    return os.getpid()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _median(xs):
    return statistics.median(xs) if xs else None


def _percentile(xs, p):
    """Linear-interpolated percentile, p in [0, 100]."""
    xs = sorted(xs)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _version_of(dist_name):
    try:
        from importlib.metadata import version

        return version(dist_name)
    except Exception:
        return None


def _wait_future(fut, timeout=600.0):
    """Wait for a future to finish without fetching its result to the client."""
    deadline = time.monotonic() + timeout
    while not fut.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"future {fut.key!r} not done after {timeout}s")
        time.sleep(0.002)
    status = getattr(fut, "status", "finished")
    if status not in ("finished", None):
        # Surface the remote exception.
        fut.result()


def wait_idle(client, notes, timeout=60.0):
    """Wait until the scheduler holds no tasks (all released futures forgotten).

    Uses ``client.who_has()`` (all keys known to the scheduler).  If the backend
    does not support it, falls back to a fixed short sleep and records a note.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = len(client.who_has())
        except Exception as e:  # not implemented / different signature
            msg = f"who_has() unavailable ({type(e).__name__}: {e}); slept 1s instead"
            if msg not in notes:
                notes.append(msg)
            time.sleep(1.0)
            return
        if n == 0:
            return
        if time.monotonic() > deadline:
            notes.append(f"cluster not idle after {timeout}s ({n} keys left)")
            return
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# Workloads (run inside the backend subprocess)
# ---------------------------------------------------------------------------


def wl_roundtrip(client, repeat, sz, notes):
    medians, p10s, p90s = [], [], []
    for _ in range(repeat):
        for i in range(sz["roundtrip_warmup"]):
            client.submit(inc, i, pure=False).result()
        lat = []
        for i in range(sz["roundtrip_calls"]):
            t0 = time.perf_counter()
            r = client.submit(inc, i, pure=False).result()
            lat.append(time.perf_counter() - t0)
            if r != i + 1:
                raise AssertionError(f"inc({i}) returned {r!r}")
        lat_ms = [x * 1e3 for x in lat]
        medians.append(_median(lat_ms))
        p10s.append(_percentile(lat_ms, 10))
        p90s.append(_percentile(lat_ms, 90))
        wait_idle(client, notes)
    notes.append(
        f"{sz['roundtrip_calls']} sequential submit().result() after "
        f"{sz['roundtrip_warmup']} warm-up calls, per repeat"
    )
    return {"median_ms": medians, "p10_ms": p10s, "p90_ms": p90s}


def wl_map(client, repeat, sz, notes):
    n = sz["map_tasks"]
    expected = n * (n + 1) // 2
    secs, rates = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        futs = client.map(inc, range(n), pure=False)
        res = client.gather(futs)
        dt = time.perf_counter() - t0
        if len(res) != n or sum(res) != expected:
            raise AssertionError("map/gather returned wrong results")
        del futs, res
        secs.append(dt)
        rates.append(n / dt)
        wait_idle(client, notes)
    notes.append(f"{n} tasks")
    return {"tasks_per_s": rates, "seconds": secs}


def wl_tree(client, repeat, sz, notes):
    n = sz["tree_leaves"]
    expected = n * (n + 1) // 2
    ntasks = 2 * n - 1
    secs, rates = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        L = client.map(inc, range(n), pure=False)
        while len(L) > 1:
            nxt = [client.submit(add, L[i], L[i + 1]) for i in range(0, len(L) - 1, 2)]
            if len(L) % 2:
                nxt.append(L[-1])
            L = nxt
        nxt = None
        r = L[0].result()
        dt = time.perf_counter() - t0
        if r != expected:
            raise AssertionError(f"tree reduction returned {r!r}, expected {expected}")
        L = nxt = None
        secs.append(dt)
        rates.append(ntasks / dt)
        wait_idle(client, notes)
    notes.append(f"{n} leaves, {ntasks} tasks")
    return {"seconds": secs, "tasks_per_s": rates}


def wl_transfer(client, repeat, sz, notes):
    import numpy as np

    n = sz["transfer_elems"]
    nbytes = 8 * n
    workers = sorted(client.scheduler_info()["workers"])
    if len(workers) < 2:
        raise RuntimeError(f"need 2 workers, scheduler reports {workers}")
    w0, w1 = workers[0], workers[1]

    # Untimed warm-up: one full-size transfer opens the worker-to-worker
    # connection and lets both workers' allocators grow to the working-set
    # size (the first large transfer is otherwise much slower and noisy).
    warm = client.submit(np.random.random, n, workers=[w0], pure=False)
    _wait_future(warm)
    client.submit(np.sum, warm, workers=[w1]).result()
    del warm
    wait_idle(client, notes)

    secs, rates, local = [], [], []
    verified = True
    for _ in range(repeat):
        x = client.submit(np.random.random, n, workers=[w0], pure=False)
        _wait_future(x)
        t0 = time.perf_counter()
        s = client.submit(np.sum, x, workers=[w1]).result()
        dt = time.perf_counter() - t0
        if not (0.45 * n < s < 0.55 * n):
            raise AssertionError(f"np.sum of {n} uniforms returned {s!r}")
        try:
            holders = client.who_has([x])[x.key]
            if w1 not in holders:
                verified = False
        except Exception:
            verified = None
        del x
        secs.append(dt)
        rates.append(nbytes / dt / 1e9)
        wait_idle(client, notes)

        # Reference: np.sum of an equally sized local array in this process.
        a = np.random.random(n)
        t0 = time.perf_counter()
        np.sum(a)
        local.append((time.perf_counter() - t0) * 1e3)
        del a
    notes.append(
        f"{nbytes / 1e6:.0f} MB float64 from {w0} to {w1}; "
        f"GB/s = {nbytes / 1e9:g} GB / seconds (includes task overhead and the sum)"
    )
    if verified is False:
        notes.append("WARNING: who_has did not show a copy of x on the target worker")
    elif verified is None:
        notes.append("could not verify the copy on the target worker (who_has failed)")
    return {"seconds": secs, "gb_per_s": rates, "local_sum_ms": local}


STARTUP_PROGRAM = r"""
import json, sys, time
t0 = time.perf_counter()
from {module} import Client, LocalCluster
t1 = time.perf_counter()

def inc(x):
    return x + 1

if __name__ == "__main__":
    t2 = time.perf_counter()
    cluster = LocalCluster({cluster_kwargs})
    client = Client(cluster)
    r = client.submit(inc, 1).result()
    t3 = time.perf_counter()
    assert r == 2, r
    client.close()
    cluster.close()
    t4 = time.perf_counter()
    print("STARTUP_JSON " + json.dumps({{"import_s": t1 - t0, "startup_s": t3 - t2, "close_s": t4 - t3}}), flush=True)
"""


def _kill_group(proc):
    """Terminate a subprocess we started (new session) and its descendants."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def wl_startup(backend, repeat, sz, notes, timeout=120.0):
    code = STARTUP_PROGRAM.format(
        module=backend,
        cluster_kwargs=", ".join(f"{k}={v!r}" for k, v in CLUSTER_KWARGS.items()),
    )
    secs, imports, procs = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=_child_env(),
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise TimeoutError(f"startup subprocess did not finish in {timeout}s")
        total = time.perf_counter() - t0
        rec = None
        for line in out.splitlines():
            if line.startswith("STARTUP_JSON "):
                rec = json.loads(line[len("STARTUP_JSON "):])
        if proc.returncode != 0 or rec is None:
            tail = "\n".join(err.strip().splitlines()[-15:])
            raise RuntimeError(
                f"startup subprocess exited with {proc.returncode}:\n{tail}"
            )
        secs.append(rec["startup_s"])
        imports.append(rec["import_s"])
        procs.append(total)
    notes.append(
        "fresh `python -c` process per repeat; seconds = LocalCluster() start to "
        "first result; import and whole-process (incl. interpreter + close) for reference"
    )
    return {"seconds": secs, "import_s": imports, "process_s": procs}


def check_cluster(client):
    """Sanity checks that the numbers mean what they claim: two workers, each a
    separate process distinct from the client's.  Returns a list of warnings."""
    warnings = []
    try:
        workers = sorted(client.scheduler_info()["workers"])
    except Exception as e:
        return [f"could not list workers ({type(e).__name__}: {e})"]
    if len(workers) != CLUSTER_KWARGS["n_workers"]:
        warnings.append(f"expected {CLUSTER_KWARGS['n_workers']} workers, found {len(workers)}")
    try:
        pids = [
            client.submit(worker_pid, workers=[w], pure=False).result() for w in workers
        ]
    except Exception as e:
        return warnings + [f"could not run a task on each worker ({type(e).__name__}: {e})"]
    if os.getpid() in pids:
        warnings.append("tasks ran in the client process, not in worker processes")
    if len(set(pids)) != len(pids):
        warnings.append(f"workers share a process (pids {pids})")
    return warnings


# ---------------------------------------------------------------------------
# Backend subprocess (child) mode
# ---------------------------------------------------------------------------


def _child_env():
    """Environment for subprocesses: make the repo's shoal importable."""
    env = dict(os.environ)
    pp = env.get("PYTHONPATH", "")
    parts = [p for p in pp.split(os.pathsep) if p]
    if REPO_ROOT not in parts:
        parts.insert(0, REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _summarise(name, samples):
    metrics = {}
    for key, label, unit, better in METRICS[name]:
        xs = samples.get(key)
        if xs is None:
            continue
        metrics[key] = {
            "label": label,
            "unit": unit,
            "better": better,
            "value": _median(xs),
            "samples": xs,
        }
    return metrics


def run_child(backend, names, repeat, quick, emit):
    """Run the workloads against one backend; report records via ``emit``."""
    # Make sure worker processes (and the startup subprocesses) can import shoal
    # from this checkout even if it is not installed.
    os.environ.update({"PYTHONPATH": _child_env()["PYTHONPATH"]})
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)

    sz = SIZES["quick" if quick else "full"]
    meta = {
        "record": "meta",
        "backend": backend,
        "python": platform.python_version(),
        "dask": _version_of("dask"),
        "numpy": _version_of("numpy"),
        "repeat": repeat,
        "quick": quick,
    }
    try:
        from importlib import import_module

        api = import_module(backend)
        Client, LocalCluster = api.Client, api.LocalCluster
        meta["version"] = getattr(api, "__version__", None) or _version_of(backend)
        try:
            import dask

            meta["dask"] = dask.__version__
        except Exception:
            pass
    except BaseException as e:
        meta["version"] = _version_of(backend)
        emit(meta)
        emit(
            {
                "record": "error",
                "fatal": True,
                "error": f"import failed: {type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        )
        emit({"record": "done", "ok": False})
        return 2
    emit(meta)

    cluster_names = [n for n in names if n in CLUSTER_WORKLOADS]
    ok = True
    if cluster_names:
        cluster = client = None
        try:
            t0 = time.perf_counter()
            cluster = LocalCluster(**CLUSTER_KWARGS)
            client = Client(cluster)
            # Untimed warm-up so the first measured workload does not pay for
            # first-task costs (connections, imports on the workers).
            client.gather(client.map(inc, range(10), pure=False))
            boot = time.perf_counter() - t0
            sanity = check_cluster(client)
            wait_idle(client, [])
        except BaseException as e:
            ok = False
            err = f"cluster start failed: {type(e).__name__}: {e}"
            for name in cluster_names:
                emit(
                    {
                        "record": "workload",
                        "name": name,
                        "error": err,
                        "traceback": traceback.format_exc(),
                    }
                )
            cluster_names = []
        try:
            for name in cluster_names:
                notes = []
                t0 = time.perf_counter()
                try:
                    fn = globals()["wl_" + name]
                    samples = fn(client, repeat, sz, notes)
                    emit(
                        {
                            "record": "workload",
                            "name": name,
                            "metrics": _summarise(name, samples),
                            "notes": notes,
                            "elapsed_s": time.perf_counter() - t0,
                        }
                    )
                except Exception as e:
                    ok = False
                    emit(
                        {
                            "record": "workload",
                            "name": name,
                            "error": f"{type(e).__name__}: {e}",
                            "traceback": traceback.format_exc(),
                            "notes": notes,
                            "elapsed_s": time.perf_counter() - t0,
                        }
                    )
                    try:
                        wait_idle(client, notes, timeout=10)
                    except Exception:
                        pass
        finally:
            for obj in (client, cluster):
                if obj is not None:
                    try:
                        obj.close()
                    except Exception:
                        pass
        if cluster_names:
            emit({"record": "info", "cluster_boot_s": boot, "sanity": sanity})

    if "startup" in names:
        notes = []
        t0 = time.perf_counter()
        try:
            samples = wl_startup(backend, repeat, sz, notes)
            emit(
                {
                    "record": "workload",
                    "name": "startup",
                    "metrics": _summarise("startup", samples),
                    "notes": notes,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
        except Exception as e:
            ok = False
            emit(
                {
                    "record": "workload",
                    "name": "startup",
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(),
                    "notes": notes,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
    emit({"record": "done", "ok": ok})
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# Parent mode
# ---------------------------------------------------------------------------


def machine_info():
    info = {
        "cpu": None,
        "logical_cores": os.cpu_count(),
        "physical_cores": None,
        "ram_gib": None,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if not info["cpu"]:
        info["cpu"] = platform.processor() or platform.machine()
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            info["ram_gib"] = round(pages / 2**30, 1)
        except (ValueError, OSError, AttributeError):
            pass
    return info


def _source_version():
    """shoal's version from the checkout's pyproject.toml (when not installed)."""
    try:
        import tomllib

        with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
            return tomllib.load(f)["project"]["version"]
    except Exception:
        return None


def _distributed_installed():
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


def run_backend_subprocess(backend, args, progress):
    """Run one backend in a child process; return its collected result dict."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--backend",
        backend,
        "--json",
        "--repeat",
        str(args.repeat),
        "--only",
        ",".join(args.only),
    ]
    if args.quick:
        cmd.append("--quick")
    result = {
        "backend": backend,
        "meta": {},
        "workloads": {},
        "error": None,
        "command": " ".join(cmd),
    }
    progress(f"[{backend}] starting: {' '.join(cmd)}")
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=_child_env(),
        cwd=REPO_ROOT,
    )
    stderr_lines = []
    done = {"seen": False}

    def read_stdout():
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or "record" not in rec:
                continue
            kind = rec["record"]
            if kind == "meta":
                result["meta"] = rec
            elif kind == "workload":
                result["workloads"][rec["name"]] = rec
                if rec.get("error"):
                    progress(f"[{backend}] {rec['name']}: FAILED: {rec['error']}")
                else:
                    progress(f"[{backend}] {rec['name']}: done in {rec['elapsed_s']:.1f}s")
            elif kind == "error":
                result["error"] = rec["error"]
                result["traceback"] = rec.get("traceback")
            elif kind == "info":
                result.setdefault("info", {}).update(
                    {k: v for k, v in rec.items() if k != "record"}
                )
            elif kind == "done":
                done["seen"] = True

    def read_stderr():
        for line in proc.stderr:
            stderr_lines.append(line.rstrip("\n"))
            if len(stderr_lines) > 400:
                del stderr_lines[:200]

    threads = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=read_stderr, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        result["error"] = result["error"] or f"timed out after {args.timeout:.0f}s"
    except BaseException:
        _kill_group(proc)
        raise
    for t in threads:
        t.join(timeout=5)
    # Anything left in our child's session (e.g. orphaned workers) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    result["returncode"] = proc.returncode
    result["elapsed_s"] = time.perf_counter() - t_start
    if result["error"] is None and not done["seen"]:
        tail = [l for l in stderr_lines if l.strip()][-1:] or ["no output"]
        result["error"] = f"subprocess exited with code {proc.returncode}: {tail[0]}"
    result["stderr_tail"] = stderr_lines[-25:]
    progress(f"[{backend}] finished in {result['elapsed_s']:.1f}s")
    return result


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _ratio(s, d, better):
    if s is None or d is None or better == "ref":
        return None
    try:
        if better == "lower":
            return d / s
        return s / d
    except ZeroDivisionError:
        return None


def build_rows(results, names):
    """Rows: (workload, metric label, unit, shoal value|status, distributed value|status, ratio)."""
    rows = []
    for name in names:
        for key, label, unit, better in METRICS[name]:
            cells = {}
            vals = {}
            for b in BACKENDS:
                r = results.get(b)
                if r is None:
                    cells[b] = "not run"
                    vals[b] = None
                    continue
                wl = r["workloads"].get(name)
                if wl is None:
                    cells[b] = "failed" if r.get("error") else "-"
                    vals[b] = None
                elif wl.get("error"):
                    cells[b] = "failed"
                    vals[b] = None
                else:
                    m = wl["metrics"].get(key)
                    vals[b] = m["value"] if m else None
                    cells[b] = _fmt(vals[b])
            ratio = _ratio(vals["shoal"], vals["distributed"], better)
            if better == "lower":
                unit_s = f"{unit} (lower better)"
            elif better == "higher":
                unit_s = f"{unit} (higher better)"
            else:
                unit_s = unit
            rows.append(
                (
                    name,
                    label,
                    unit_s,
                    cells["shoal"],
                    cells["distributed"],
                    f"{ratio:.2f}x" if ratio is not None else "-",
                )
            )
    return rows


def header_lines(machine, results, args, dist_note):
    def ver(b):
        r = results.get(b)
        v = (r or {}).get("meta", {}).get("version") or _version_of(b)
        if not v and b == "shoal":
            v = _source_version()
            v = f"{v} (source checkout)" if v else None
        if not v:
            v = "not installed"
        if r is None:
            v += " (not run)"
        return v

    dask_v = None
    for b in BACKENDS:
        dask_v = dask_v or (results.get(b) or {}).get("meta", {}).get("dask")
    dask_v = dask_v or _version_of("dask") or "not installed"
    phys = machine["physical_cores"]
    lines = [
        f"CPU: {machine['cpu']}, {machine['logical_cores']} logical cores"
        + (f" ({phys} physical)" if phys else "")
        + (f", {machine['ram_gib']} GiB RAM" if machine["ram_gib"] else ""),
        f"OS: {machine['os']}; Python {machine['python']}",
        f"Versions: dask {dask_v}, distributed {ver('distributed')}, shoal {ver('shoal')}",
        f"Cluster: LocalCluster({', '.join(f'{k}={v!r}' for k, v in CLUSTER_KWARGS.items())})",
        f"Repeats: {args.repeat} per workload, median reported"
        + ("; QUICK sizes (smoke run, not representative)" if args.quick else ""),
        "Ratio = how many times better shoal is: >1 shoal better, <1 shoal worse "
        "(distributed/shoal for times, shoal/distributed for rates).",
    ]
    if dist_note:
        lines.append(dist_note)
    for b in BACKENDS:
        r = results.get(b)
        if r is not None and r.get("error"):
            lines.append(f"{b}: failed: {r['error']}")
    for b in BACKENDS:
        r = results.get(b)
        if r is None:
            continue
        for w in (r.get("info") or {}).get("sanity") or []:
            lines.append(f"{b}: WARNING: {w}")
        for name, wl in r["workloads"].items():
            if wl.get("error"):
                lines.append(f"{b}: {name} failed: {wl['error'].splitlines()[0]}")
    return lines


def print_text(machine, results, names, args, dist_note):
    print()
    for line in header_lines(machine, results, args, dist_note):
        print(line)
    print()
    head = ("workload", "metric", "unit", "shoal", "distributed", "ratio")
    rows = build_rows(results, names)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    right = {3, 4, 5}

    def fmt_row(r):
        return "  ".join(
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
            for i, c in enumerate(r)
        )

    print(fmt_row(head))
    print("  ".join("-" * w for w in widths))
    prev = None
    for r in rows:
        shown = r if r[0] != prev else ("",) + r[1:]
        prev = r[0]
        print(fmt_row(shown))
    notes = []
    for b in BACKENDS:
        r = results.get(b)
        if r is None:
            continue
        for name in names:
            wl = r["workloads"].get(name)
            if not wl or wl.get("error"):
                continue
            extra = list(wl.get("notes") or [])
            key, _, unit, _ = METRICS[name][0]
            m = wl.get("metrics", {}).get(key)
            if m and len(m["samples"]) > 1:
                extra.append(
                    f"{key} samples: " + ", ".join(_fmt(x) for x in m["samples"]) + f" {unit}"
                )
            if extra:
                notes.append(f"  {b}/{name}: " + "; ".join(extra))
    if notes:
        print("\nNotes:")
        print("\n".join(notes))


def print_markdown(machine, results, names, args, dist_note):
    for line in header_lines(machine, results, args, dist_note):
        print(f"- {line}")
    print()
    print("| workload | metric | unit | shoal | distributed | ratio (>1: shoal better) |")
    print("|---|---|---|---:|---:|---:|")
    for r in build_rows(results, names):
        print("| " + " | ".join(str(c) for c in r) + " |")


def run_parent(args):
    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    machine = machine_info()
    wanted = list(BACKENDS) if args.backend == "both" else [args.backend]
    results = {}
    dist_note = None
    for b in wanted:
        if b == "distributed" and not _distributed_installed():
            dist_note = (
                "distributed: not installed (development-only dependency, "
                "`pip install -e .[bench]`); benchmarked shoal alone"
            )
            progress(dist_note)
            continue
        results[b] = run_backend_subprocess(b, args, progress)
        r = results[b]
        if r.get("error"):
            progress(f"{b}: failed: {r['error']}")
        if args.verbose:
            for name, wl in r["workloads"].items():
                if wl.get("traceback"):
                    progress(f"--- {b}/{name} traceback:\n{wl['traceback']}")
            if r.get("error"):
                if r.get("traceback"):
                    progress(r["traceback"])
                progress(f"--- {b} stderr (tail):")
                progress("\n".join(r.get("stderr_tail", [])))
    if args.json:
        print(
            json.dumps(
                {"machine": machine, "args": vars(args), "results": results},
                indent=2,
            )
        )
    elif args.markdown:
        print_markdown(machine, results, args.only, args, dist_note)
    else:
        print_text(machine, results, args.only, args, dist_note)
    any_ok = any(not r.get("error") for r in results.values())
    return 0 if any_ok else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark shoal against dask distributed (same run, same machine).",
    )
    p.add_argument(
        "--backend",
        choices=("both",) + BACKENDS,
        default="both",
        help="which backend(s) to run (default both). With --json and a single "
        "backend this is the per-backend child mode used internally.",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output (child mode: one JSON record per line)",
    )
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads to run (default all: {','.join(WORKLOADS)})",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repeats per workload, median reported (default 3; 1 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds before a backend subprocess is killed (default 900)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show child tracebacks / stderr on failure"
    )
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    args.only = [w for w in WORKLOADS if w in only]  # canonical order
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.backend != "both" and args.json:
        return run_child(args.backend, args.only, args.repeat, args.quick, _emit)
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
