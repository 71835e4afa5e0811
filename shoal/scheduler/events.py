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


@dataclass(slots=True)
class HoldKeys(SchedulerEvent):
    """A named hold keeps these keys alive (and computed), as a client that wants them
    would, but it is not a client: nothing is ever sent to it. Extensions hold the keys
    of the futures they store (a published dataset, a `Variable`, a `Queue`); keys the
    scheduler does not know are ignored."""

    holder: str
    keys: tuple


@dataclass(slots=True)
class ReleaseHold(SchedulerEvent):
    """The named hold lets go of these keys (`keys=None`: of all of them, and the hold
    is gone); a key nobody else needs is then released."""

    holder: str
    keys: tuple | None = None


@dataclass(slots=True)
class WantKeys(SchedulerEvent):
    """The connected client `client_id` now wants these keys, as if it had sent
    `desire-keys`: an extension handing the client futures (a dataset, a variable's or a
    queue's value) makes it want their keys before its reply leaves."""

    client_id: str
    keys: tuple


@dataclass(slots=True)
class Restart(SchedulerEvent):
    """Forget every task (`Scheduler.restart`): every client's futures are cancelled
    with reason `scheduler-restart`, and every hold lets go of its keys."""
