#!/usr/bin/env python
"""What open dashboard tabs cost the scheduler: the 20,000-task map with no viewer and
with 5 live `/status` WebSocket viewers (target: at most 5% slower).

    python benchmarks/bench_dashboard.py                 # 20,000 tasks, 5 repeats of each
    python benchmarks/bench_dashboard.py --tasks 2000 --repeat 1   # smoke run
    python benchmarks/bench_dashboard.py --want graph,groups,profile   # viewers of those pages too

The viewers run in a separate process (as browsers would), each reading and dropping
every update the scheduler pushes. Runs alternate without/with viewers so drift on a
shared machine hits both alike; the medians and their ratio are printed, for wall time
and for the CPU time of the scheduler's process (which also runs the client) and of the
worker processes: on a busy machine the CPU times are the steadier measure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def inc(x):
    return x + 1


async def _viewers(port: int, n: int, want: str = "") -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws{'?want=' + want if want else ''} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        while await reader.read(1 << 16):  # what a browser does with it is its own CPU time
            pass

    await asyncio.gather(*(one() for _ in range(n)))


def run_viewers(port: int, n: int, want: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--viewers-only", str(port), "--viewers", str(n), "--want", want])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--viewers", type=int, default=5)
    p.add_argument("--want", default="", help="what the viewers ask for beside /status's update, e.g. graph,groups,profile")
    p.add_argument("--viewers-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.viewers_only:
        asyncio.run(_viewers(args.viewers_only, args.viewers, args.want))
        return

    import psutil

    from shoal import Client, LocalCluster

    me = psutil.Process()

    def cpu(procs: list) -> float:
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        dashboard = cluster.scheduler.dashboard
        client.gather(client.map(inc, range(2000), pure=False))  # warm up
        times: dict[bool, list[float]] = {False: [], True: []}
        sched_cpu: dict[bool, list[float]] = {False: [], True: []}
        worker_cpu: dict[bool, list[float]] = {False: [], True: []}
        workers = me.children(recursive=True)
        updates = 0
        busy = 0.0
        for _ in range(args.repeat):
            for watched in (False, True):
                viewers = None
                if watched:
                    viewers = run_viewers(dashboard.port, args.viewers, args.want)
                    deadline = time.monotonic() + 30
                    while len(dashboard.viewers) < args.viewers:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the viewers did not connect")
                        time.sleep(0.01)
                before, busy_before = dashboard.updates, dashboard.busy
                c0, w0 = cpu([me]), cpu(workers)
                t0 = time.perf_counter()
                futures = client.map(inc, range(args.tasks), pure=False)
                client.gather(futures)
                times[watched].append(time.perf_counter() - t0)
                sched_cpu[watched].append(cpu([me]) - c0)
                worker_cpu[watched].append(cpu(workers) - w0)
                del futures
                if viewers is not None:
                    updates += dashboard.updates - before
                    busy += dashboard.busy - busy_before
                    viewers.terminate()
                    viewers.wait()
                    while dashboard.viewers:
                        time.sleep(0.01)
        without, with_ = statistics.median(times[False]), statistics.median(times[True])
        print(f"{args.tasks} tasks, 2 worker processes x 1 thread, {args.repeat} runs each (median)")
        print(f"  wall, no viewer      : {without:.3f} s   ({args.tasks / without:,.0f} tasks/s)")
        print(f"  wall, {args.viewers} viewers      : {with_:.3f} s   ({args.tasks / with_:,.0f} tasks/s)")
        print(f"  wall overhead        : {100 * (with_ / without - 1):+.1f} %   (target <= 5 %)")
        for label, d in (("scheduler+client CPU", sched_cpu), ("workers CPU", worker_cpu)):
            a, b = statistics.median(d[False]), statistics.median(d[True])
            print(f"  {label:<21}: {a:.3f} s -> {b:.3f} s   ({100 * (b / a - 1):+.1f} %)")
        if args.want:
            print(f"  the viewers also asked for: {args.want}; last build of each part (ms):",
                  {k: round(1000 * v, 2) for k, v in dashboard.costs.items()})
        print(f"  updates pushed       : {updates} while watched, every {dashboard.interval * 1000:.0f} ms")
        watched = sum(times[True])
        print(f"  dashboard work       : {1000 * busy / max(updates, 1):.1f} ms per update on the scheduler's loop, "
              f"{100 * busy / watched:.1f} % of the watched runs' wall time")  # fmt: skip
        print("  all wall times (s)   :", {k: [round(t, 3) for t in v] for k, v in (("none", times[False]), ("5", times[True]))})


if __name__ == "__main__":
    main()
