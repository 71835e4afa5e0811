"""Stimuli of the scheduler state machine: everything that can change its state.

A message from a peer becomes `ClientMsg` or `WorkerMsg` (the typed wire record plus who
sent it); connections coming and going become the other events. Every event carries a
`stimulus_id` so any transition can be traced back to its cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.protocol.messages import Message, RegisterWorker


@dataclass(slots=True)
class SchedulerEvent:
    stimulus_id: str


@dataclass(slots=True)
class AddClient(SchedulerEvent):
    client_id: str


@dataclass(slots=True)
class RemoveClient(SchedulerEvent):
    client_id: str


@dataclass(slots=True)
class ClientMsg(SchedulerEvent):
    client_id: str
    msg: Message


@dataclass(slots=True)
class AddWorker(SchedulerEvent):
    msg: RegisterWorker


@dataclass(slots=True)
class RemoveWorker(SchedulerEvent):
    address: str
    reason: str


@dataclass(slots=True)
class WorkerMsg(SchedulerEvent):
    address: str
    msg: Message


@dataclass(slots=True)
class DropReplicas(SchedulerEvent):
    """Forget the copies of keys on some workers (`(key, address)` pairs), after the
    shell copied them elsewhere (replicate / rebalance). The last copy of a key, and a
    copy a task processing on that worker will read, are kept."""

    replicas: list


@dataclass(slots=True)
class SetRetiring(SchedulerEvent):
    """Mark workers as retiring (`retiring=True`: no new task is placed on them, nor stolen
    to them, while their data moves away) or no longer retiring (`retire_workers` kept
    them)."""

    addresses: list
    retiring: bool = True


@dataclass(slots=True)
class SetRestrictions(SchedulerEvent):
    """Pin tasks to workers: key -> worker addresses (strict: no other worker), or None
    to lift the restriction. An extension placing work where its data is (the shuffle
    service pins each output partition to its owner) sends it; unknown keys are ignored."""

    restrictions: dict


@dataclass(slots=True)
class Recompute(SchedulerEvent):
    """Compute these keys again: a result in memory is forgotten on every worker and,
    if something still needs it, computed anew; a task being computed is started over
    (the running attempt's result is ignored). Keys in other states, unknown keys and
    data a client scattered are left alone. The shuffle service sends it when a worker
    that held part of a shuffle's buffers leaves."""

    keys: tuple
    reason: str = ""
