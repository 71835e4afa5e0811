"""The parent side of the small two-backend benchmarks (`bench_sync.py`,
`bench_actors.py`): parse the common flags, run the script once per installed backend in
a subprocess of its own (`--backend NAME --json`, which prints one JSON line), and print
both figures with their ratio (>1: shoal better)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable

BACKENDS = ("shoal", "distributed")


def compare(
    script: str,
    doc: str,
    run_child: Callable[[str, int], None],
    rows: list[tuple[str, str, str]],
    key: str,
    higher_is_better: bool,
    fmt: str,
    argv: list[str] | None = None,
) -> None:
    """`rows` are (workload, metric label, unit); each child reports
    ``{workload: {key: value}}`` or ``{workload: {"error": text}}``; `fmt` formats a value."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=BACKENDS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if args.backend:
        run_child(args.backend, args.repeat)
        return
    results: dict = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped", file=sys.stderr)
            continue
        cmd = [sys.executable, os.path.abspath(script), "--backend", backend, "--json", "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=900)
        try:
            results[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception:
            results[backend] = {rows[0][0]: {"error": f"run failed (exit {proc.returncode})"}}
    sep = " | " if args.markdown else "  "
    head = ["workload", "metric", "unit", "shoal", "distributed", "ratio (>1: shoal better)"]
    print(("| " + sep.join(head) + " |") if args.markdown else sep.join(f"{h:<16}" for h in head))
    if args.markdown:
        print("|---|---|---|---:|---:|---:|")
    for wl, label, unit in rows:
        s = results.get("shoal", {}).get(wl, {}).get(key)
        d = results.get("distributed", {}).get(wl, {}).get(key)
        ratio = (f"{s / d:.2f}x" if higher_is_better else f"{d / s:.2f}x") if s and d else "-"
        cells = [wl, label, unit, format(s, fmt) if s else "-", format(d, fmt) if d else "-", ratio]
        print(("| " + sep.join(cells) + " |") if args.markdown else sep.join(f"{c:<16}" for c in cells))
    for backend, res in results.items():
        for wl, r in res.items():
            if "error" in r:
                print(f"{backend} {wl}: {r['error']}")
