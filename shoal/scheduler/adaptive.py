"""Pure adaptive-scaling policy: how many workers the work needs, which ones may go, and
what to recommend to the cluster. No I/O, no clock: `shoal.deploy.Adaptive` gathers the
numbers from the scheduler, calls these functions and carries out what they say.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

#: memory use (managed bytes / memory limits) above which the target doubles the workers
MEMORY_PRESSURE = 0.6


def adaptive_target(
    n_pending: int,
    avg_duration: float,
    target_duration: float,
    n_workers: int,
    total_threads: int,
    memory_used: int = 0,
    memory_limit: int = 0,
) -> int:
    """Workers needed to finish the `n_pending` unfinished runnable tasks (queued,
    processing or without a worker), each taking about `avg_duration` s, within
    `target_duration` s, given the current workers' average threads. Never more workers
    than tasks can keep busy; at least one while anything is pending; twice the current
    workers when their managed memory exceeds `MEMORY_PRESSURE` of their limits. With
    nothing pending the target is 0 (the caller keeps workers that must hold data)."""
    threads_per_worker = total_threads / n_workers if n_workers and total_threads else 1.0
    target = 0
    if n_pending:
        work = n_pending * max(avg_duration, 0.0)
        cpu = math.ceil(work / max(target_duration, 1e-9) / threads_per_worker)
        by_tasks = math.ceil(n_pending / threads_per_worker)
        target = max(1, min(cpu, by_tasks))
    if memory_limit and memory_used > MEMORY_PRESSURE * memory_limit:
        target = max(target, 2 * n_workers)
    return target


def workers_to_close(workers: Sequence[tuple[Any, int, int, int]], target: int) -> list[Any]:
    """Of `workers` as `(name, tasks processing, bytes held, keys held)`, the idle ones to
    close to come down to `target` workers: those with the least data first (it must be
    moved). Busy workers are never closed, nor the last worker holding data (its data
    would have nowhere to go)."""
    excess = len(workers) - max(target, 0)
    if excess <= 0:
        return []
    idle = sorted((w for w in workers if w[1] == 0), key=lambda w: (w[2], w[3], str(w[0])))
    chosen = idle[:excess]
    if len(chosen) == len(workers) and any(w[3] for w in chosen):
        chosen = chosen[:-1]
    return [w[0] for w in chosen]


def recommendations(
    target: int,
    plan: Iterable[Any],
    requested: Iterable[Any],
    observed: Iterable[Any],
    closable: Sequence[Any],
    close_counts: dict[Any, int],
    wait_count: int,
) -> dict:
    """What to do about `target` workers, given the cluster's `plan` (names wanted),
    `requested` (started) and `observed` (seen by the scheduler) workers, and the names
    the scheduler would close (`closable`, best first). Scaling up is immediate; a worker
    is recommended for closing only once it was a candidate `wait_count` times in a row
    (counted in `close_counts`, updated in place), so short lulls do not churn workers.
    Workers asked for but not yet arrived go first. Returns `{"status": "same"}`,
    `{"status": "up", "n": target}` or `{"status": "down", "workers": [...]}`."""
    plan = set(plan)
    if target >= len(plan):
        close_counts.clear()
        if target == len(plan):
            return {"status": "same"}
        return {"status": "up", "n": target}
    excess = len(plan) - target
    not_arrived = sorted((set(requested) - set(observed)) & plan, key=str)
    to_close = list(not_arrived[:excess])
    for name in closable:
        if len(to_close) >= excess:
            break
        if name in plan and name not in to_close:
            to_close.append(name)
    firm = []
    for name in to_close:
        close_counts[name] = close_counts.get(name, 0) + 1
        if close_counts[name] >= wait_count:
            firm.append(name)
    for name in list(close_counts):
        if name not in to_close:
            del close_counts[name]
    if firm:
        return {"status": "down", "workers": firm}
    return {"status": "same"}
