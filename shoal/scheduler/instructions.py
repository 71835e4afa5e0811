"""Outputs of the scheduler state machine: what the I/O shell must send, and to whom."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.protocol.messages import Message


@dataclass(slots=True)
class ToWorker:
    address: str
    msg: Message


@dataclass(slots=True)
class ToClient:
    client_id: str
    msg: Message


Instruction = ToWorker | ToClient
