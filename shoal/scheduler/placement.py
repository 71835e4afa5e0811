"""Pure placement policy: which worker runs a task, and how much work a worker may queue.

Kept apart from the bookkeeping in `state` (as RSDS splits its scheduler from its
reactor) so the policy can be read, tested and replaced on its own. Functions only read
the records they are given.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from shoal.protocol.priority import priority_parts, priority_rank  # noqa: F401  (their home before)

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedTask, SchedWorker

#: assumed network bandwidth, bytes/s, to weigh moving data against waiting for a busy worker
BANDWIDTH = 100e6
#: how many times a copy counts when it goes to a worker that is busy anyway, for a task
#: whose work is less than the copy (see `decide_worker`; 4-16 measured alike on the
#: task-shuffle set_index, 1 cost 7% more CPU)
BUSY_COPY_PENALTY = 8.0


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
    ts: SchedTask,
    workers: dict[str, SchedWorker],
    free: dict[SchedWorker, int],
    avg_duration: float = 0.0,
    prefix_durations: dict[str, float] | None = None,
) -> SchedWorker | None:
    """The worker that will finish `ts` soonest, or None if no worker may run it now.

    A task without dependencies goes to the least loaded worker with a free slot
    (`free`). One with dependencies weighs, on every worker it may run on, moving the
    data it lacks there against the work queued ahead of it, and the answer may be a
    busy worker (it queues the task beyond its slots): a task that would have to copy a
    large input rather waits behind the worker holding it than runs elsewhere now. Each
    task queued there raises that worker's cost, so the queue stays as long as copying
    the input would take.

    Copying to a worker that is busy anyway costs more than the copy's time: both ends
    spend CPU on it and the busy worker would not have idled. So while some worker
    already holds all of a task's inputs, a busy worker that lacks them pays the copy
    `BUSY_COPY_PENALTY` times over when the task's work (its prefix's recent duration)
    is less than the copy: a quick task on big data stays with its data unless the
    holder's queue is far longer. Idle workers pay the plain copy (they would idle
    otherwise), and stealing evens out queues once a worker runs dry."""
    valid = valid_workers(ts, workers)
    if valid is None:
        candidates = [ws for ws in workers.values() if _open(ws)] if ts.dependencies else list(free)
    else:
        candidates = [ws for ws in valid if ws in free or (ts.dependencies and _open(ws))]
        if ts.loose and ts.restrictions:
            preferred = [ws for ws in candidates if _matches(ws, ts.restrictions)]
            candidates = preferred or candidates
    if not candidates:
        return None
    if ts.actor:  # spread actors: each one's calls are served by its worker's actor thread
        candidates = [ws for ws in candidates if ws in free]
        return min(candidates, key=lambda ws: (len(ws.actors), _load(ws))) if candidates else None
    if len(candidates) == 1:
        return candidates[0]
    if not ts.dependencies:
        return min(candidates, key=_load)
    # weigh moving dependency data against how busy each worker is
    per_thread = max(avg_duration, 1e-4)
    deps = ts.dependencies
    missing = {ws: sum(max(d.nbytes, 0) for d in deps if ws not in d.who_has) for ws in candidates}
    holder = 0 in missing.values()  # some worker has every input
    work = prefix_durations.get(ts.prefix, per_thread) if prefix_durations else per_thread

    def cost(ws: SchedWorker) -> float:
        copy = missing[ws] / BANDWIDTH
        if holder and copy > work and ws.occupied >= ws.nthreads:
            copy *= BUSY_COPY_PENALTY
        return copy + _load(ws) * per_thread

    return min(candidates, key=cost)


def _open(ws: SchedWorker) -> bool:
    """May take new tasks, even beyond its slots: not retiring or paused, and has threads."""
    return ws.accepts_work and ws.nthreads > 0


def _keeps(ws: SchedWorker) -> int:
    """How many of its tasks a worker keeps when others steal: one per thread, or, while
    paused, only those it reported started."""
    return len(ws.started) if ws.paused else ws.nthreads


def _load(ws: SchedWorker) -> float:
    return ws.occupied / ws.nthreads


def plan_steals(
    workers: dict[str, SchedWorker],
    stealing: dict[SchedTask, SchedWorker],
    refused: set[SchedTask],
    avg_duration: float,
    prefix_durations: dict[str, float] | None = None,
) -> list[SchedTask]:
    """Tasks to take back from busy workers so that idle threads elsewhere can run them.

    Called only when nothing is queued on the scheduler. A worker is *idle* when it has
    fewer tasks than threads; a *victim* holds more tasks than threads (the surplus waits
    there). The most recently sent (lowest priority) surplus tasks are taken first,
    never more than the idle threads can use, and only when moving their dependencies
    costs less than waiting behind the victim's queue and no more than running the task
    itself (its prefix's recent duration): a quick task on big data, such as picking one
    piece out of a shuffle split, stays where its data is."""
    idle = [ws for ws in workers.values() if ws.occupied < ws.nthreads and ws.accepts_work]
    if not idle:
        return []
    free_threads = sum(ws.nthreads - ws.occupied for ws in idle)
    free_threads -= len(stealing)  # steals in flight will land on these threads
    if free_threads <= 0:
        return []
    # a paused worker starts nothing: every task it has not started may go
    victims = [ws for ws in workers.values() if ws.occupied > _keeps(ws)]
    victims.sort(key=lambda ws: ws.occupied / ws.nthreads, reverse=True)
    in_flight: dict[SchedWorker, int] = {}
    for victim in stealing.values():
        in_flight[victim] = in_flight.get(victim, 0) + 1
    per_task = max(avg_duration, 1e-4)
    durations = prefix_durations or {}
    out: list[SchedTask] = []
    for victim in victims:
        surplus = victim.occupied - _keeps(victim) - in_flight.get(victim, 0)
        wait = _load(victim) * per_task
        for ts in reversed(victim.processing):
            if surplus <= 0 or free_threads <= 0:
                break
            if ts in stealing or ts in refused or ts in victim.long_running:
                continue
            valid = valid_workers(ts, workers)
            thieves = idle if valid is None else [ws for ws in idle if ws in valid]
            if not thieves:
                continue
            missing = sum(max(d.nbytes, 0) for d in ts.dependencies if not (d.who_has & set(thieves)))
            if missing:
                moving = missing / BANDWIDTH
                if moving > wait or moving > durations.get(ts.prefix, per_task):
                    continue
            out.append(ts)
            surplus -= 1
            free_threads -= 1
        if free_threads <= 0:
            break
    return out


# ---------------------------------------------------------------------------- data placement
# `Client.replicate` and `Client.rebalance`: plans over plain data (key -> holder
# addresses, key -> bytes, worker -> bytes held). The scheduler shell executes a plan by
# copying first and dropping a replica only once its copy is confirmed, so no key is lost.


def plan_replicate(
    holders: dict[Any, set[str]], nbytes: dict[Any, int], memory: dict[str, int], n: int | None
) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """Make each key of `holders` live on exactly `n` of the workers in `memory` (all of
    them when `n` is None or larger). Returns `(copies, drops)`: `(key, recipient)` pairs,
    least-loaded recipients first, and `(key, worker)` pairs of surplus replicas, dropped
    from the most-loaded holders. Replicas outside `memory` are neither counted nor
    dropped. Larger keys are placed first; `memory` is not modified."""
    if not memory:
        return [], []
    target = len(memory) if n is None else min(n, len(memory))
    if target < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    load = dict(memory)
    copies: list[tuple[Any, str]] = []
    drops: list[tuple[Any, str]] = []
    for key in sorted(holders, key=lambda k: -max(nbytes.get(k, 0), 0)):
        size = max(nbytes.get(key, 0), 0)
        have = [w for w in holders[key] if w in load]
        if len(have) < target:
            free = sorted((w for w in load if w not in holders[key]), key=lambda w: (load[w], w))
            for w in free[: target - len(have)]:
                copies.append((key, w))
                load[w] += size
        elif len(have) > target:
            for w in sorted(have, key=lambda w: (-load[w], w))[: len(have) - target]:
                drops.append((key, w))
                load[w] -= size
    return copies, drops


def plan_rebalance(
    holders: dict[Any, set[str]], nbytes: dict[Any, int], memory: dict[str, int]
) -> list[tuple[Any, str, str]]:
    """Moves `(key, sender, recipient)` that even out the bytes held by the workers in
    `memory` (worker -> bytes it holds, all keys counted). Only keys of `holders` move,
    each at most once, never to a worker that already holds it. Each move takes a key of
    at most half the gap between the pair, so a move never overshoots and the spread
    shrinks with every move (the plan always ends). `memory` is not modified.

    Greedy: the fullest worker that can give sends its largest fitting key to the
    emptiest worker that can take it. A sender's keys are scanned largest first from a
    cursor that skips keys already moved or too large for its widest gap (which only
    narrows as the plan goes on), so a plan costs about O(moves x workers), not
    O(moves x keys)."""
    load = dict(memory)
    on: dict[str, list[Any]] = {w: [] for w in load}
    for key, addrs in holders.items():
        if max(nbytes.get(key, 0), 0) > 0:
            for w in addrs:
                if w in on:
                    on[w].append(key)
    for keys in on.values():
        keys.sort(key=lambda k: -nbytes[k])  # largest first
    cursor = dict.fromkeys(load, 0)
    moved: set = set()
    moves: list[tuple[Any, str, str]] = []
    while True:
        order = sorted(load, key=lambda w: (load[w], w))
        found = None
        for sender in reversed(order):
            widest = load[sender] - load[order[0]]
            if widest <= 0:
                break
            keys, i = on[sender], cursor[sender]
            while i < len(keys) and (keys[i] in moved or nbytes[keys[i]] * 2 > widest):
                i += 1
            cursor[sender] = i
            for key in itertools.islice(keys, i, None):
                if key in moved:
                    continue
                size = nbytes[key]
                for recipient in order:
                    if size * 2 > load[sender] - load[recipient]:
                        break  # recipients only get fuller from here
                    if recipient not in holders[key]:
                        found = (key, sender, recipient)
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            return moves
        key, sender, recipient = found
        moved.add(key)
        moves.append(found)
        load[sender] -= nbytes[key]
        load[recipient] += nbytes[key]
