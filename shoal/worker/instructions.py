"""Outputs of the worker state machine (`state.py`): what the I/O shell
(`server.py`) must do: execute a task in the pool, fetch keys from a peer, send a
message to the scheduler, spill to disk. PURE records.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled
from shoal.utils import Key


@dataclass(slots=True)
class Execute:
    key: Key
    run_id: int
    func: Pickled | None
    spec: Pickled
    #: the dependency keys, whose values the executing thread reads from `data` (a
    #: spilled one comes back from disk in that thread, not on the event loop)
    deps: tuple
    #: a client wants the result: a small one travels inside `task-finished`
    send_inline: bool
    actor: bool = False


@dataclass(slots=True)
class Fetch:
    worker: str
    keys: tuple


@dataclass(slots=True)
class SendToScheduler:
    msg: m.Message


@dataclass(slots=True)
class Spill:
    """Move `nbytes` of managed memory to disk, least recently used first."""

    nbytes: int


WorkerInstruction = Execute | Fetch | SendToScheduler | Spill
