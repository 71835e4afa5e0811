"""Stimuli of the worker state machine (`state.py`): everything that can change its
state, handed in through `WorkerState.handle_stimulus`. Each carries the `stimulus_id`
that names it in every story line. PURE records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled
from shoal.utils import Key


@dataclass(slots=True)
class WorkerEvent:
    stimulus_id: str


@dataclass(slots=True)
class ComputeTaskEvent(WorkerEvent):
    msg: m.ComputeTask


@dataclass(slots=True)
class FreeKeysEvent(WorkerEvent):
    keys: tuple


@dataclass(slots=True)
class SecedeEvent(WorkerEvent):
    """The running task gave its thread back to the pool (it waits on other tasks)."""

    key: Key
    run_id: int


@dataclass(slots=True)
class StealRequestEvent(WorkerEvent):
    key: Key
    run_id: int


@dataclass(slots=True)
class ExecuteSuccess(WorkerEvent):
    key: Key
    run_id: int
    value: Any
    nbytes: int
    type_name: str
    start: float
    stop: float
    inline: Pickled | None
    #: for an actor task: the object itself (`value` is then its proxy)
    instance: Any = None
    #: the executing thread's ident (for the task stream)
    thread: int = 0


@dataclass(slots=True)
class ExecuteFailure(WorkerEvent):
    key: Key
    run_id: int
    exception: Pickled
    traceback: list | None
    text: str
    start: float
    stop: float
    thread: int = 0


@dataclass(slots=True)
class RescheduleEvent(WorkerEvent):
    key: Key
    run_id: int


@dataclass(slots=True)
class FetchDone(WorkerEvent):
    """A fetch from `worker` ended: `data` holds what it served; the other requested keys
    it did not have (or, with `failed`, the peer could not be reached at all)."""

    worker: str
    requested: tuple
    data: dict
    nbytes: dict
    failed: bool = False
    #: wall-clock seconds the fetch took (for the task stream's "transfer" entries)
    start: float = 0.0
    stop: float = 0.0


@dataclass(slots=True)
class UpdateDataEvent(WorkerEvent):
    """Data put here directly by a client (scatter), or replicas fetched from peers at
    the scheduler's request (`report`: tell the scheduler with `add-keys`)."""

    data: dict
    nbytes: dict
    report: bool = False


@dataclass(slots=True)
class MemorySample(WorkerEvent):
    """The shell's reading of memory: managed bytes in memory and on disk (at their
    in-memory size), and the process's resident memory."""

    managed: int
    spilled: int
    process: int


@dataclass(slots=True)
class SpillDone(WorkerEvent):
    """The spill thread finished a `Spill`: `freed` managed bytes moved to disk;
    `error` says why it stopped short (the disk is full or unwritable)."""

    freed: int
    error: str | None = None
