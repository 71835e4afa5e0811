"""Pure placement policy: which worker runs a task, and how much work a worker may queue.

Kept apart from the bookkeeping in `state` (as RSDS splits its scheduler from its
reactor) so the policy can be read, tested and replaced on its own. Functions only read
the records they are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedTask, SchedWorker

#: assumed network bandwidth, bytes/s, to weigh moving data against waiting for a busy worker
BANDWIDTH = 200e6


def queue_depth(avg_duration: float, budget: float, cap: int) -> int:
    """Tasks to queue per thread beyond the running one: enough to cover `budget` seconds
    of expected work, at least 1 (so a worker never idles for a round trip), at most `cap`."""
    if avg_duration <= 0:
        return cap
    return max(1, min(cap, int(budget / avg_duration)))


def _matches(ws: SchedWorker, restrictions: frozenset) -> bool:
    return (
        ws.address in restrictions
        or ws.host in restrictions
        or ws.name in restrictions
        or str(ws.name) in restrictions
    )


def _has_resources(ws: SchedWorker, needed: dict) -> bool:
    return all(ws.resources.get(k, 0) >= v for k, v in needed.items())


def valid_workers(ts: SchedTask, workers: dict[str, SchedWorker]) -> set[SchedWorker] | None:
    """Workers allowed to run `ts`; None when any worker may (no restrictions)."""
    if not ts.restrictions and not ts.resources:
        return None
    out = set()
    for ws in workers.values():
        if ts.restrictions and not ts.loose and not _matches(ws, ts.restrictions):
            continue
        if ts.resources and not _has_resources(ws, ts.resources):
            continue
        out.add(ws)
    return out


def has_valid(ts: SchedTask, workers: dict[str, SchedWorker]) -> bool:
    valid = valid_workers(ts, workers)
    return valid is None or bool(valid)


def decide_worker(
    ts: SchedTask, workers: dict[str, SchedWorker], free: dict[SchedWorker, int], avg_duration: float = 0.0
) -> SchedWorker | None:
    """The worker with free slots that will finish `ts` soonest, or None if none may."""
    valid = valid_workers(ts, workers)
    if valid is None:
        candidates = list(free)
    else:
        candidates = [ws for ws in valid if ws in free]
        if ts.loose and ts.restrictions:
            preferred = [ws for ws in candidates if _matches(ws, ts.restrictions)]
            candidates = preferred or candidates
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if not ts.dependencies:
        return min(candidates, key=_load)
    # weigh moving dependency data against how busy each worker is
    per_thread = max(avg_duration, 1e-4)

    def cost(ws: SchedWorker) -> float:
        missing = sum(max(d.nbytes, 0) for d in ts.dependencies if ws not in d.who_has)
        return missing / BANDWIDTH + _load(ws) * per_thread

    return min(candidates, key=cost)


def _load(ws: SchedWorker) -> float:
    return len(ws.processing) / ws.nthreads
