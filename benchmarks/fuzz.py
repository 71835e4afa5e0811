#!/usr/bin/env python
"""Long fuzz runs against real processes, and the same unauthenticated probes against
`distributed` for comparison (issue 18).

    python benchmarks/fuzz.py                        # 100,000 authenticated cases + probes
    python benchmarks/fuzz.py --cases 20000 --probes 5000 --markdown

Part 1, authenticated: a scheduler process and a worker process (started with
``python -m shoal.scheduler`` / ``python -m shoal.worker``, checking their invariants
after every stimulus: ``DASK_SHOAL__SCHEDULER__VALIDATE``), a client holding 20 results.
Each case is one connection sending one packet (registrations as client or worker, every
op with plausible and mutated fields, requests of every safe operation) followed by an
``identity`` call (``echo`` on the worker); the server must answer it or close the
connection. Hypothesis draws a corpus (`shoal.protocol.fuzzing.packets`, ``--corpus``
packets for the scheduler and a quarter as many for the worker: drawing is slow, ~80/s);
the cases are the corpus as drawn and then `fuzzing.mutate` of it (values moved between
messages, messages spliced, dropped, duplicated, ops swapped). One case in five goes to
the worker. Every 500 cases the client runs ``validate_state`` on the scheduler and the
worker and checks that both processes live and still compute. Reported: cases/s, crashes
(a process died or the scheduler stopped), state violations, RSS of the scheduler and the
worker before and after, log lines the scheduler wrote.

Part 2, unauthenticated: the same hostile connections (random bytes, truncated and
oversized length prefixes, a wrong secret's worth of bytes) against a shoal scheduler
and a `distributed` scheduler (each its own process): connections/s, whether it still
serves, RSS at the start, after ``--warmup`` connections (what the first failures load
once) and after the flood, and the log lines it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import struct
import subprocess
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def inc(x: int) -> int:
    return x + 1


def _start(cmd: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    # stderr goes to a file: a pipe nobody reads would fill and block the process
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    proc.log = log  # type: ignore[attr-defined]
    line = proc.stdout.readline().strip()
    if not line:
        log.seek(0)
        raise RuntimeError(f"{cmd} did not start: {log.read()[-2000:]}")
    return proc, line


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _log_lines(proc: subprocess.Popen, pattern: str = "") -> int:
    """Stop `proc`; the number of lines it logged (containing `pattern`)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.seek(0)  # type: ignore[attr-defined]
    return len([line for line in proc.log if line.strip() and pattern in line])  # type: ignore[attr-defined]


# ------------------------------------------------------------------ part 1


def authenticated(n_cases: int, seed: int, n_corpus: int = 3000, pause: float = 0.0) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings

    from shoal import Client
    from shoal.comm import connect
    from shoal.protocol import messages as m
    from shoal.protocol.fuzzing import mutate, packets
    from shoal.security import Security

    secret = secrets.token_bytes(32)
    env = dict(os.environ, SHOAL_SECRET=secret.hex(), DASK_SHOAL__SCHEDULER__VALIDATE="True",
               DASK_SHOAL__WORKER__VALIDATE="True", PYTHONPATH=ROOT)  # fmt: skip
    sched, address = _start([sys.executable, "-m", "shoal.scheduler", "--log-level", "INFO"], env)
    worker = subprocess.Popen([sys.executable, "-m", "shoal.worker", address], env=env, stderr=subprocess.DEVNULL)
    out = {"cases": 0, "worker_cases": 0, "refused": 0, "taken": 0, "crashes": 0, "state_violations": 0, "hangs": 0}
    try:
        client = Client(address, security=Security(secret), timeout=30)
        client.wait_for_workers(1, timeout=30)
        held = client.map(inc, range(20), key=[("fuzz-held", i) for i in range(20)])
        client.gather(held)
        loop = asyncio.new_event_loop()
        (worker_address,) = client.scheduler_info()["workers"]
        # `python -m shoal.worker` may run the worker in a child process: the largest RSS of the tree
        def worker_rss() -> int:
            procs = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
            return max(p.memory_info().rss for p in procs)

        last_word = {address: ("identity", {"n_workers": 0}), worker_address: ("echo", {"data": 1})}

        async def probe(packet: list, to: str) -> str:
            comm = await connect(to, secret=secret, info={"role": "fuzz"})
            try:
                comm.send_many(packet)
                comm.send(m.Request(99, *last_word[to]).to_wire())
                deadline = loop.time() + 10
                while True:
                    try:
                        batch = await asyncio.wait_for(comm.read(), max(deadline - loop.time(), 0.01))
                    except asyncio.TimeoutError:
                        return "hang"
                    except Exception:
                        return "refused"
                    if any(type(w) is tuple and w[:2] == ("reply", 99) for w in batch):
                        return "taken"
            finally:
                comm.abort()

        def check() -> None:
            if sched.poll() is not None or worker.poll() is not None:
                out["crashes"] += 1
                raise SystemExit("a process died")
            try:
                client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.validate_state())
                client.run(lambda dask_worker: dask_worker.state.validate_state())
            except Exception as e:
                out["state_violations"] += 1
                print("state violation:", e, file=sys.stderr)
            assert client.submit(inc, out["cases"], pure=False).result(timeout=30) == out["cases"] + 1

        # the corpus: packets drawn by hypothesis (slow to draw: ~80/s on the loaded VM)
        corpus: list = []

        @settings(max_examples=n_corpus, phases=[Phase.generate], deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(packets())
        def draw(rp: tuple) -> None:
            corpus.append(rp)

        worker_corpus: list = []

        @settings(max_examples=max(n_corpus // 4, 1), phases=[Phase.generate], deadline=None, database=None,
                  derandomize=False, suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(packets(worker_side=True))
        def draw_for_worker(rp: tuple) -> None:
            worker_corpus.append(rp)

        random.seed(seed)
        tc = time.perf_counter()
        draw()
        draw_for_worker()
        out["corpus"] = len(corpus)
        out["corpus_seconds"] = time.perf_counter() - tc
        print(f"  corpus of {len(corpus):,} packets drawn in {out['corpus_seconds']:.0f} s", file=sys.stderr)
        rng = random.Random(seed)
        rss_before = _rss(sched.pid)
        worker_rss_before = worker_rss()
        t0 = time.perf_counter()

        def case(rp: tuple, to: str) -> None:
            c0 = time.perf_counter()
            outcome = loop.run_until_complete(probe(rp[1], to))
            if outcome == "hang":
                out.setdefault("hung_examples", []).append(str(rp)[:300])
            if outcome == "hang" or time.perf_counter() - c0 > 1:
                print(f"  slow case ({outcome}, {time.perf_counter() - c0:.1f} s): {str(rp)[:300]}", file=sys.stderr)
            out["cases"] += 1
            out["refused" if outcome == "refused" else "taken" if outcome == "taken" else "hangs"] += 1
            if out["cases"] == warm_at:  # every drawn packet went once: what they load once is loaded
                out["rss_warm_mb"] = _rss(sched.pid) / 2**20
            if out["cases"] % 500 == 0:
                check()
                rate = out["cases"] / (time.perf_counter() - t0)
                print(f"  {out['cases']:>7} cases, {rate:,.0f}/s, {_rss(sched.pid) / 2**20:.0f} MB", file=sys.stderr)
            if pause:
                time.sleep(pause)

        # every corpus packet as drawn, then mutations of them (`fuzzing.mutate`); one
        # case in five goes to the worker (peer messages and worker calls)
        both = len(corpus) + len(worker_corpus)
        warm_at = min(both, n_cases)
        for i in range(n_cases):
            if i % 5 == 4:
                j = i // 5
                rp = worker_corpus[j] if j < len(worker_corpus) else mutate(rng, rng.choice(worker_corpus), worker_corpus)
                case(rp, worker_address)
                out["worker_cases"] += 1
            else:
                j = i - i // 5
                case(corpus[j] if j < len(corpus) else mutate(rng, rng.choice(corpus), corpus), address)
        check()
        out["held"] = client.run_on_scheduler(_held)
        elapsed = time.perf_counter() - t0
        out["seconds"] = elapsed
        out["cases_per_s"] = out["cases"] / elapsed
        out["rss_before_mb"] = rss_before / 2**20
        out["rss_after_mb"] = _rss(sched.pid) / 2**20
        out["worker_rss_before_mb"] = worker_rss_before / 2**20
        out["worker_rss_after_mb"] = worker_rss() / 2**20
        out["drawn"] = min(both, out["cases"])
        client.close()
        loop.close()
    finally:
        worker.terminate()
        worker.wait(20)
        out["scheduler_log_lines"] = _log_lines(sched)
    return out


def _held(dask_scheduler) -> dict:
    """What the scheduler keeps on purpose, each bounded by its configuration."""
    from shoal.log_buffer import _handler

    s = dask_scheduler
    sampler = getattr(getattr(s, "profiling", None), "sampler", None)
    return {
        "events": s.event_log.total, "topics": len(s.event_log.events),
        "log_lines": len(_handler.lines) if _handler is not None else 0,
        "profile_cycles": len(sampler.history) if sampler is not None else 0,
        "story": len(s.state.story_log), "tasks": len(s.state.tasks), "clients": len(s.clients),
    }  # fmt: skip


# ------------------------------------------------------------------ part 2


def _hostile(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 256))  # random bytes
    if kind == 1:
        return struct.pack("<I", 0xFFFFFFFF) + rng.randbytes(8)  # absurd frame count
    if kind == 2:
        return struct.pack("<IQ", 1, 2**62)  # oversized length prefix
    if kind == 3:
        return struct.pack("<IQ", 1, 100) + rng.randbytes(rng.randrange(0, 50))  # truncated packet
    return rng.randbytes(32) * 2  # a wrong secret's worth of bytes


async def _flood(host: str, port: int, n: int, seed: int) -> float:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_hostile(rng))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except OSError:
            pass
    return n / (time.perf_counter() - t0)


def unauthenticated(n: int, seed: int, warmup: int = 500) -> dict:
    out = {}
    secret = secrets.token_bytes(32)
    shoal_env = dict(os.environ, SHOAL_SECRET=secret.hex(), PYTHONPATH=ROOT)
    starts = {
        "shoal": ([sys.executable, "-m", "shoal.scheduler", "--log-level", "INFO"], shoal_env),
    }
    try:
        import distributed  # noqa: F401

        code = (
            "import asyncio, sys\n"
            "from distributed import Scheduler\n"
            "async def main():\n"
            "    async with Scheduler(host='127.0.0.1', port=0, dashboard_address=None) as s:\n"
            "        print(s.address, flush=True)\n"
            "        await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        starts["distributed"] = ([sys.executable, "-c", code], dict(os.environ))
    except ImportError:
        print("distributed is not installed: probing shoal only", file=sys.stderr)
    for name, (cmd, env) in starts.items():
        proc, address = _start(cmd, env)
        host, port = address.split("://")[1].rsplit(":", 1)
        time.sleep(1.0)  # settle (startup allocations) before the first RSS reading
        rss0 = _rss(proc.pid)
        # a first few connections load what any first failure needs (imports, caches):
        # a one-time cost, not growth; RSS is read before and after them
        asyncio.run(_flood(host, int(port), warmup, seed + 1))
        rss_warm = _rss(proc.pid)
        rate = asyncio.run(_flood(host, int(port), n, seed))
        serving = asyncio.run(_still_serving(host, int(port)))
        rss1 = _rss(proc.pid)
        out[name] = {
            "connections": n, "per_s": rate, "serving": serving and proc.poll() is None,
            "rss_before_mb": rss0 / 2**20, "rss_warm_mb": rss_warm / 2**20, "rss_after_mb": rss1 / 2**20,
            "log_lines": _log_lines(proc),
        }  # fmt: skip
    return out


async def _still_serving(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.close()
        return True
    except Exception:
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=100_000, help="authenticated fuzz cases")
    p.add_argument("--probes", type=int, default=20_000, help="unauthenticated connections per scheduler")
    p.add_argument("--corpus", type=int, default=3000, help="packets drawn by hypothesis; the other cases mutate them")
    p.add_argument("--pause", type=float, default=0.0, help="seconds to sleep between cases (a gentler pace)")
    p.add_argument("--warmup", type=int, default=500, help="hostile connections before the flood's RSS baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    auth = authenticated(args.cases, args.seed, args.corpus, args.pause) if args.cases else None
    unauth = unauthenticated(args.probes, args.seed, args.warmup) if args.probes else {}
    if auth:
        growth = 100 * (auth["rss_after_mb"] / auth["rss_before_mb"] - 1)
        warm_growth = 100 * (auth["rss_after_mb"] / auth["rss_warm_mb"] - 1)
        print("\nAuthenticated fuzz against a shoal scheduler + worker (real processes)")
        rows = [
            ("cases (drawn + mutated)", f"{auth['cases']:,} ({auth['drawn']:,} + {auth['cases'] - auth['drawn']:,})"),
            ("of which to the worker", f"{auth['worker_cases']:,}"),
            ("cases/s", f"{auth['cases_per_s']:,.0f}"),
            ("taken / refused / hung", f"{auth['taken']:,} / {auth['refused']:,} / {auth['hangs']}"),
            ("crashes", auth["crashes"]), ("state violations", auth["state_violations"]),
            ("scheduler RSS before -> after", f"{auth['rss_before_mb']:.0f} MB -> {auth['rss_after_mb']:.0f} MB ({growth:+.1f} %)"),
            ("scheduler RSS after the drawn packets (warm) -> after",
             f"{auth['rss_warm_mb']:.1f} MB -> {auth['rss_after_mb']:.1f} MB ({warm_growth:+.1f} %)"),
            ("held at the end (events / topics / log lines / profile cycles / story / tasks / clients)",
             " / ".join(f"{v:,}" for v in auth["held"].values())),
            ("worker RSS before -> after", f"{auth['worker_rss_before_mb']:.0f} MB -> {auth['worker_rss_after_mb']:.0f} MB"),
            ("scheduler log lines", auth["scheduler_log_lines"]),
        ]  # fmt: skip
        if args.markdown:
            print("\n| metric | shoal |\n|---|---|")
            for k, v in rows:
                print(f"| {k} | {v} |")
        else:
            for k, v in rows:
                print(f"  {k:<32} {v}")
    if unauth:
        print(f"\nUnauthenticated probes ({args.probes:,} hostile connections each)")
        names = list(unauth)
        metrics = [
            ("connections/s", lambda r: f"{r['per_s']:,.0f}"), ("still serving", lambda r: "yes" if r["serving"] else "NO"),
            ("RSS start -> after warm-up -> after", lambda r: f"{r['rss_before_mb']:.1f} -> {r['rss_warm_mb']:.1f} -> {r['rss_after_mb']:.1f} MB"),
            ("growth from start / after warm-up", lambda r: f"{100 * (r['rss_after_mb'] / r['rss_before_mb'] - 1):+.1f} % / {100 * (r['rss_after_mb'] / r['rss_warm_mb'] - 1):+.1f} %"),
            ("log lines written", lambda r: f"{r['log_lines']:,}"),
        ]  # fmt: skip
        if args.markdown:
            print("\n| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
            for label, f in metrics:
                print(f"| {label} | " + " | ".join(f(unauth[n]) for n in names) + " |")
        else:
            for label, f in metrics:
                print(f"  {label:<36} " + "   ".join(f"{n}: {f(unauth[n])}" for n in names))


if __name__ == "__main__":
    main()
