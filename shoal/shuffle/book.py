"""The scheduler's bookkeeping of shuffles: which runs exist, who owns which output.

PURE: no asyncio, no sockets, no clock. The scheduler extension (`scheduler.py`) feeds it
what happens (a worker asks for a shuffle's run, a worker leaves, a shuffle's barrier
is released) and turns what it answers into scheduler events and worker messages.

A *shuffle* is one unit of the graph: its input (transfer) tasks, one barrier task and
its output tasks, named by the ids in `ShuffleSpec`. A *run* is one attempt at it: a
run id unique in this scheduler, and the owners, a stable balanced map output partition
-> worker chosen when the first transfer asks. A run ends three ways:

- its barrier is released (all outputs done, or the computation was cancelled):
  `finish` forgets it and the workers drop its buffers;
- an owner leaves: `remove_worker` forgets it and returns a `Restart` naming the keys
  the scheduler must compute again (every transfer and the barrier; the outputs that
  are running); the next transfer to ask creates a new run with owners among the
  workers left;
- a non-owner leaves: nothing here (the transfers it finished are recomputed from
  lineage by the scheduler; receivers drop the pieces they already have).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shoal.utils import Key

__all__ = ["ShuffleBook", "ShuffleRun", "ShuffleSpec", "ShuffleClosed", "Restart", "assign_owners"]


class ShuffleClosed(RuntimeError):
    """The shuffle run a task belonged to is over: restarted (an owner left; the
    scheduler runs the task again in the new run) or no longer wanted (cancelled). The
    task's result is not used either way."""


@dataclass(frozen=True, slots=True)
class ShuffleSpec:
    """What the scheduler needs to know of one shuffle (sent by the first transfer)."""

    id: str
    #: the output partitions wanted (all of range(npartitions) unless filtered)
    parts: tuple[int, ...]
    #: output partition -> the key of the task that assembles it
    output_keys: tuple[Key, ...]
    transfer_keys: tuple[Key, ...]
    barrier_key: Key

    def output_key(self, part: int) -> Key:
        return self.output_keys[self.parts.index(part)]

    def pins(self, owners: dict[int, str]) -> dict[Key, tuple[str]]:
        """output key -> (its owner,): each output task pinned where its pieces go."""
        return {k: (owners[p],) for p, k in zip(self.parts, self.output_keys)}


@dataclass(slots=True)
class ShuffleRun:
    spec: ShuffleSpec
    run_id: int
    #: output partition -> worker address
    owners: dict[int, str]
    #: workers that take part (owners)
    participants: frozenset = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Restart:
    """An owner of `run` left: compute `recompute` again (the next run pins the
    outputs to its own owners)."""

    run: ShuffleRun
    recompute: tuple[Key, ...]


def assign_owners(parts: tuple[int, ...], workers: list[str]) -> dict[int, str]:
    """Balanced and stable: the output partitions cut into one run of neighbours per
    worker (sizes differing by one at most), the workers in address order (so a given
    set of workers always gets the same map). Neighbours, not dealt round-robin: a
    transfer then cuts each receiver's rows out of its input in one go (`split_frame`)."""
    if not workers:
        raise ValueError("a shuffle needs at least one worker")
    ordered = sorted(workers)
    n, m = len(ordered), len(parts)
    return {p: ordered[i * n // m] for i, p in enumerate(parts)}


class ShuffleBook:
    """Every live shuffle run, by shuffle id."""

    def __init__(self) -> None:
        self.runs: dict[str, ShuffleRun] = {}
        #: barrier key -> shuffle id (to notice a barrier's release)
        self.barriers: dict[Key, str] = {}
        self._next_run = 1

    def get_or_create(self, spec: ShuffleSpec, workers: list[str]) -> tuple[ShuffleRun, bool]:
        """The current run of `spec.id`, created (owners among `workers`) if there is
        none. -> (run, created)."""
        run = self.runs.get(spec.id)
        if run is not None:
            return run, False
        owners = assign_owners(spec.parts, workers)
        run = ShuffleRun(spec, self._next_run, owners, frozenset(owners.values()))
        self._next_run += 1
        self.runs[spec.id] = run
        self.barriers[spec.barrier_key] = spec.id
        return run, True

    def finish(self, shuffle_id: str) -> ShuffleRun | None:
        """The shuffle is over (its barrier was released): forget its run."""
        run = self.runs.pop(shuffle_id, None)
        if run is not None:
            self.barriers.pop(run.spec.barrier_key, None)
        return run

    def remove_worker(self, address: str, active_outputs: Any = ()) -> list[Restart]:
        """`address` left. Every run it owned part of is forgotten and must start over:
        its transfers, its barrier and those of its outputs in `active_outputs` (a
        container of keys the scheduler is running or about to run) are recomputed."""
        out = []
        for sid, run in list(self.runs.items()):
            if address not in run.participants:
                continue
            self.finish(sid)
            spec = run.spec
            keys = (*spec.transfer_keys, spec.barrier_key, *(k for k in spec.output_keys if k in active_outputs))
            out.append(Restart(run, keys))
        return out

    def validate(self) -> None:
        for sid, run in self.runs.items():
            assert run.spec.id == sid
            assert self.barriers[run.spec.barrier_key] == sid
            assert set(run.owners) == set(run.spec.parts)
            assert set(run.owners.values()) == set(run.participants)
        assert len(self.barriers) == len(self.runs)
