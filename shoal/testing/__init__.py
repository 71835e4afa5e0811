"""Test helpers shipped with shoal: drive the state machines without a loop or sockets.

- `shoal.testing.builders`: events and wire messages for the scheduler and worker state
  machines, with sensible defaults (`add_worker`, `update_graph`, `task_finished`, ...);
- `shoal.testing.matchers`: find instructions in what `handle_stimulus` returned
  (`to_worker(out, m.ComputeTask)`, `to_client(out, m.KeyInMemory, key="x")`);
- `shoal.testing.simulator`: `Simulator`, one `SchedulerState` wired to N `WorkerState`s
  with a fake clock: whole computations (placement, fetches, stealing, lost workers) in
  microseconds, deterministic, validated after every stimulus;
- `shoal.testing.poll`: `poll(condition)` / `apoll(condition)`, the one way tests wait
  for something real (never a blind sleep).
"""

from shoal.testing.poll import apoll, poll
from shoal.testing.simulator import Simulator

__all__ = ["Simulator", "apoll", "poll"]
