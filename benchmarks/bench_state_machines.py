#!/usr/bin/env python
"""The two pure state machines alone: CPU time per task, no sockets, no threads.

    python benchmarks/bench_state_machines.py              # both machines, 20,000 tasks
    python benchmarks/bench_state_machines.py --tasks 100000 --repeat 9

- scheduler: a `SchedulerState` with 4 workers of 2 threads ingests one graph of
  `tasks` tasks (half roots, half with one dependency each), then is fed `task-finished`
  for every `compute-task` it sends, 50 per stimulus, until nothing is left to run;
- worker: a `WorkerState` with 4 threads is sent `compute-task`s 50 at a time, and each
  `Execute` it asks for is answered with `ExecuteSuccess`.

Time is the process's CPU time (`time.process_time`), the best of `repeat` runs, so a
machine shared with other work still gives comparable figures (wall time would not).
There is nothing to compare with in `distributed` (its machines are not driven this way);
use it to compare two shoal revisions, e.g. with ``PYTHONPATH=<other checkout>``.
"""

from __future__ import annotations

import argparse
import time

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, WorkerMsg
from shoal.scheduler.instructions import ToWorker
from shoal.scheduler.state import SchedulerState
from shoal.worker.state import ComputeTaskEvent, Execute, ExecuteSuccess, WorkerState

SPEC = dumps(((), {}))
BATCH = 50


def scheduler_run(n: int) -> tuple[float, int]:
    s = SchedulerState(clock=time.monotonic)
    workers = [f"tcp://w{i}:1" for i in range(4)]
    s.handle_stimulus(
        *[AddWorker("add", m.RegisterWorker(w, w, 2, 0, {}, 1, "/tmp", {}, None)) for w in workers], AddClient("c", "c")
    )
    half = n // 2
    tasks = [(f"r-{i}", -1, SPEC, (), (0, i), None) for i in range(half)]
    tasks += [(f"d-{i}", -1, SPEC, (f"r-{i}",), (0, n + i), None) for i in range(half)]
    wanted = tuple(f"d-{i}" for i in range(half))
    start = time.process_time()
    out = s.handle_stimulus(ClientMsg("graph", "c", m.UpdateGraph(tuple(tasks), (), wanted)))
    done = 0
    while True:
        events = [
            WorkerMsg(f"f{done + k}", i.address, m.TaskFinished(i.msg.key, i.msg.run_id, 8, "int", 0.0, 0.001, None))
            for k, i in enumerate(out)
            if type(i) is ToWorker and type(i.msg) is m.ComputeTask
        ]
        if not events:
            break
        done += len(events)
        out = []
        for k in range(0, len(events), BATCH):
            out += s.handle_stimulus(*events[k : k + BATCH])
    return time.process_time() - start, done


def worker_run(n: int) -> tuple[float, int]:
    ws = WorkerState(address="tcp://w:1", nthreads=4, clock=time.monotonic)
    start = time.process_time()
    done = 0
    for first in range(0, n, BATCH):
        keys = range(first, min(first + BATCH, n))
        out = ws.handle_stimulus(
            *[ComputeTaskEvent("c", m.ComputeTask(f"x-{j}", 1, None, SPEC, 0, {}, {}, None, False)) for j in keys]
        )
        while True:
            executes = [i for i in out if type(i) is Execute]
            if not executes:
                break
            done += len(executes)
            out = ws.handle_stimulus(
                *[ExecuteSuccess("e", e.key, e.run_id, 1, 28, "int", 0.0, 0.001, None) for e in executes]
            )
    return time.process_time() - start, done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    for name, run in (("scheduler", scheduler_run), ("worker", worker_run)):
        results = [run(args.tasks) for _ in range(args.repeat)]
        best, done = min(results)
        assert done == args.tasks, f"{name}: {done} of {args.tasks} tasks ran"
        print(f"{name:9}  {args.tasks:,} tasks  best CPU {best * 1e3:8.1f} ms  {best / done * 1e6:6.2f} us/task")


if __name__ == "__main__":
    main()
