"""A whole cluster of pure state machines, wired together on a fake clock.

`Simulator` holds one `SchedulerState` and N `WorkerState`s and plays the I/O shells'
part: it carries every instruction to the machine it names, runs `Execute`s on simulated
threads (each task takes its given duration), answers `Fetch`s from the holder's data
(taking ``nbytes / bandwidth`` seconds; a holder that is gone fails the fetch), and keeps
what reaches clients. Nothing runs for real and the clock only moves when the simulator
moves it, so placement, fetches, work stealing and lost workers are tested in
microseconds and the same input always gives the same run. Both machines validate their
state after every stimulus (`validate=True`).

    sim = Simulator(n_workers=2)
    sim.submit({"x": [], "y": ["x"]}, durations={"x": 1.0})
    sim.run()
    assert sim.in_memory() == {"y"} and sim.now == pytest.approx(1.001)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from shoal.protocol import messages as m
from shoal.scheduler.events import RemoveWorker, WorkerMsg
from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.scheduler.state import SchedulerState
from shoal.testing import builders as b
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteSuccess,
    FreeKeysEvent,
    Fetch,
    FetchDone,
    SendToScheduler,
    Spill,
    SpillDone,
    StealRequestEvent,
    WorkerState,
)

__all__ = ["Simulator"]


class Simulator:
    """See the module docstring. Workers are named ``sim://w0``, ``sim://w1``, ..."""

    def __init__(
        self,
        n_workers: int = 2,
        nthreads: int = 1,
        *,
        default_duration: float = 0.001,
        bandwidth: float = 100e6,
        latency: float = 0.0,
        validate: bool = True,
        **scheduler_options: Any,
    ):
        self.now = 0.0
        self.default_duration = default_duration
        self.bandwidth = bandwidth
        #: seconds every message takes between machines
        self.latency = latency
        self.validate = validate
        self.scheduler = SchedulerState(clock=self.clock, validate=validate, **scheduler_options)
        self.workers: dict[str, WorkerState] = {}
        #: (client id, message) of everything sent to clients, in order
        self.client_messages: list[tuple[str, m.Message]] = []
        #: (key, worker, start, stop) of every execution that finished
        self.executions: list[tuple[Any, str, float, float]] = []
        self.durations: dict[Any, float] = {}
        self.nbytes: dict[Any, int] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._threads: dict[str, list[float]] = {}
        self._ids = itertools.count(1)
        for i in range(n_workers):
            self.add_worker(f"sim://w{i}", nthreads)
        self.to_scheduler(b.add_client("c"))

    # ------------------------------------------------------------------ the clock

    def clock(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` when the clock reaches `when` (in order of scheduling for ties)."""
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), action))

    def run(self, until: float | None = None, max_steps: int = 1_000_000) -> None:
        """Move the clock forward, running what is due, until nothing is left (or the
        clock would pass `until`)."""
        for _ in range(max_steps):
            if not self._queue or (until is not None and self._queue[0][0] > until):
                if until is not None:
                    self.now = max(self.now, until)
                return
            when, _, action = heapq.heappop(self._queue)
            self.now = when
            action()
        raise RuntimeError(f"the simulation did not settle within {max_steps} steps")

    # ------------------------------------------------------------------ the cluster

    def add_worker(self, address: str, nthreads: int = 1, resources: dict | None = None) -> WorkerState:
        ws = WorkerState(address=address, nthreads=nthreads, resources=resources, validate=self.validate, clock=self.clock)
        self.workers[address] = ws
        self._threads[address] = [0.0] * nthreads
        self.to_scheduler(b.add_worker(address, nthreads, resources=resources))
        return ws

    def remove_worker(self, address: str, reason: str = "killed") -> None:
        """The worker dies: its data and running tasks are gone; the scheduler hears of it."""
        self.workers.pop(address, None)
        self._threads.pop(address, None)
        self.to_scheduler(RemoveWorker(self._sid("gone"), address, reason))

    def submit(
        self, graph: dict, wanted: Any = None, *, durations: dict | None = None, nbytes: dict | None = None,
        client: str = "c", annotations: dict | None = None,
    ) -> None:  # fmt: skip
        """Send a graph (``{key: [dependencies]}``) as client `client`; `durations` and
        `nbytes` give each task's run time (default `default_duration`) and result size."""
        self.durations.update(durations or {})
        self.nbytes.update(nbytes or {})
        self.to_scheduler(b.update_graph(graph, wanted, client, annotations))

    def release(self, *keys: Any, client: str = "c") -> None:
        self.to_scheduler(b.ClientMsg(self._sid("release"), client, m.ReleaseKeys(keys)))

    # ------------------------------------------------------------------ what happened

    def in_memory(self, client: str = "c") -> set:
        """Keys the client was told are in memory (and not lost or cancelled since)."""
        out: set = set()
        for cid, msg in self.client_messages:
            if cid != client:
                continue
            if type(msg) is m.KeyInMemory:
                out.add(msg.key)
            elif type(msg) in (m.LostData, m.CancelledKeys):
                out.difference_update(getattr(msg, "keys", None) or (msg.key,))
        return out

    def messages(self, kind: type, client: str = "c") -> list:
        return [msg for cid, msg in self.client_messages if cid == client and type(msg) is kind]

    def ran_on(self, key: Any) -> list[str]:
        """The workers that finished executing `key`, in order."""
        return [w for k, w, _, _ in self.executions if k == key]

    # ------------------------------------------------------------------ the shells' part

    def _sid(self, prefix: str) -> str:
        return f"sim-{prefix}-{next(self._ids)}"

    def to_scheduler(self, *events: Any) -> None:
        for inst in self.scheduler.handle_stimulus(*events):
            if type(inst) is ToWorker:
                self.at(self.now + self.latency, lambda inst=inst: self._deliver_to_worker(inst.address, inst.msg))
            elif type(inst) is ToClient:
                self.client_messages.append((inst.client_id, inst.msg))
            else:  # pragma: no cover
                raise TypeError(inst)

    def _deliver_to_worker(self, address: str, msg: m.Message) -> None:
        if address not in self.workers:
            return  # it died meanwhile
        sid = self._sid("scheduler")
        kind = type(msg)
        if kind is m.ComputeTask:
            event: Any = ComputeTaskEvent(sid, msg)
        elif kind is m.FreeKeys:
            event = FreeKeysEvent(sid, msg.keys)
        elif kind is m.StealRequest:
            event = StealRequestEvent(sid, msg.key, msg.run_id)
        else:  # pragma: no cover
            raise TypeError(f"the simulator does not carry {msg!r} to workers")
        self.to_worker(address, event)

    def to_worker(self, address: str, *events: Any) -> None:
        ws = self.workers.get(address)
        if ws is None:
            return
        for inst in ws.handle_stimulus(*events):
            kind = type(inst)
            if kind is SendToScheduler:
                self.at(self.now + self.latency, lambda msg=inst.msg: self._from_worker(address, msg))
            elif kind is Execute:
                self._execute(address, inst)
            elif kind is Fetch:
                self._fetch(address, inst)
            elif kind is Spill:
                self.at(self.now, lambda: self.to_worker(address, SpillDone(self._sid("spill"), 0)))
            else:  # pragma: no cover
                raise TypeError(inst)

    def _from_worker(self, address: str, msg: m.Message) -> None:
        if address in self.workers:  # a dead worker's last words are lost with it
            self.to_scheduler(WorkerMsg(self._sid("worker"), address, msg))

    def _execute(self, address: str, inst: Execute) -> None:
        threads = self._threads[address]
        i = min(range(len(threads)), key=threads.__getitem__)
        start = max(self.now, threads[i])
        stop = start + self.durations.get(inst.key, self.default_duration)
        threads[i] = stop
        nbytes = self.nbytes.get(inst.key, 8)

        def done() -> None:
            if address in self.workers:
                self.executions.append((inst.key, address, start, stop))
                ev = ExecuteSuccess(self._sid("done"), inst.key, inst.run_id, inst.key, nbytes, "int", start, stop, None)
                self.to_worker(address, ev)

        self.at(stop, done)

    def _fetch(self, address: str, inst: Fetch) -> None:
        holder = self.workers.get(inst.worker)
        if holder is None:
            self.at(self.now, lambda: self.to_worker(
                address, FetchDone(self._sid("gather"), inst.worker, inst.keys, {}, {}, failed=True)))  # fmt: skip
            return
        data = {k: holder.data[k] for k in inst.keys if k in holder.data}
        nbytes = {k: holder.nbytes.get(k, 0) for k in data}
        start = self.now
        stop = start + self.latency + sum(nbytes.values()) / self.bandwidth

        def done() -> None:
            ev = FetchDone(self._sid("gather"), inst.worker, inst.keys, data, nbytes, start=start, stop=stop)
            self.to_worker(address, ev)

        self.at(stop, done)
