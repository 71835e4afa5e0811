"""The worker side of the shuffle service: worker extension ``"shuffle"``.

A transfer task (`tasks.shuffle_transfer`, in a task thread) asks the scheduler for the
shuffle's current run (its id and owners; once per run and worker), splits its input
partition once, pickles the pieces (protocol 5: large buffers out of band, no extra copy
on the way) and hands them, one message per owner, to the event loop, then waits until
every owner has stored them.
An owner stores what it receives in the run's `ShardBuffer`; when the buffer is over its
budget it spills to disk before it acknowledges, so a sender to a full receiver waits
(backpressure), and the transfer task holding its thread means no more inputs are split
than the threads can carry. An unpack task (on the owner, pinned there by the
scheduler) takes its partition's pieces, in input order, and assembles the output once.

Runs are told apart by the run id the scheduler gives: pieces of an older run than the
one a worker holds are dropped; a newer run replaces an older one; `shuffle_forget`
drops a run's buffer and files (the run is over, cancelled, or restarting).

Budget: ``shoal.shuffle.buffer`` (0.25 of the worker's memory limit, or of the
machine's memory when the worker has none) of pieces in memory per worker, over all
runs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from typing import Any

from shoal.comm.errors import CommClosedError
from shoal.protocol.serialize import dumps, loads
from shoal.shuffle.book import ShuffleClosed
from shoal.shuffle.buffer import ShardBuffer
from shoal.shuffle.scheduler import spec_to_wire
from shoal.worker.extension import WorkerExtension
from shoal.worker.memory import compression_from_config, trim_heap

__all__ = ["ShuffleWorkerExtension", "ShuffleClosed"]

logger = logging.getLogger("shoal.shuffle")

#: how many forgotten run ids a worker remembers (to drop their late pieces)
_DEAD_RUNS = 10_000

#: how long a transfer waits for the scheduler to restart a run whose owner it cannot reach
OWNER_LOST_TIMEOUT = 120.0


#: bytes of pieces a worker may have on their way before its next transfer waits (at
#: most; a thirty-second of the memory limit when that is less)
IN_FLIGHT = 128 * 2**20

#: bytes of pieces freed (sent, assembled, spilled) between two trims of the C heap
TRIM_EVERY = 32 * 2**20


def _compact(payload: list) -> list:
    """The pieces this worker keeps, their buffers copied into one block of their own.
    Pieces are views of the whole split input (pickle 5 does not copy them): kept as
    they are, the few this worker owns would keep every piece's memory alive, unseen
    by the buffer's accounting, until the last of them is assembled or spilled. Sent
    pieces arrive in the receive buffers of their message the same way: one block per
    input."""
    from shoal.protocol.serialize import Pickled

    total = sum(memoryview(b).nbytes for p in payload for b in p.buffers)
    if not total:
        return payload
    block = memoryview(bytearray(total))
    at = 0
    out = []
    for p in payload:
        bufs = []
        for b in p.buffers:
            b = memoryview(b).cast("B")
            n = b.nbytes
            block[at : at + n] = b
            bufs.append(block[at : at + n])
            at += n
        out.append(Pickled(p.header, bufs))
    return out


class _Outgoing:
    """The sends of one run from this worker."""

    __slots__ = ("tasks", "error")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.error: BaseException | None = None


def _budget(worker: Any) -> int:
    from shoal import config

    try:
        fraction = float(config.get("shuffle.buffer"))
    except (KeyError, TypeError, ValueError):
        fraction = 0.25
    limit = int(worker.memory_limits.limit or 0)
    if not limit:
        import psutil

        limit = psutil.virtual_memory().total
    return max(int(fraction * limit), 1 << 20)


class ShuffleWorkerExtension(WorkerExtension):
    """Worker extension ``"shuffle"`` (see `shoal.worker.extension`)."""

    def __init__(self, worker: Any):
        super().__init__(worker)
        #: shuffle id -> (run id, its buffer)
        self.buffers: dict[str, tuple[int, ShardBuffer]] = {}
        #: shuffle id -> the scheduler's answer to `shuffle_get` (run id, owners): asked
        #: once per run, dropped when the run is forgotten (`shuffle_forget` comes on
        #: the scheduler's connection before any task of a later run)
        self.runs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.dead_runs: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._budget: int | None = None
        #: bytes of pieces moved to disk since the worker started
        self.spilled_bytes = 0
        #: (shuffle id, run id) -> the sends of that run not yet flushed
        self.outgoing: dict[tuple[str, int], _Outgoing] = {}
        #: seconds spent by task threads, by step (where a shuffle's time goes)
        self.seconds: collections.Counter = collections.Counter()
        #: bytes of pieces sent and not yet stored by their owner
        self.in_flight = 0
        self._landed = asyncio.Event()
        limit = int(worker.memory_limits.limit or 0)
        #: bytes of pieces on their way before a transfer waits
        self.in_flight_limit = min(IN_FLIGHT, limit // 32) if limit else IN_FLIGHT
        #: bytes of pieces freed since the C heap was last trimmed
        self._freed = 0
        #: times the C heap was trimmed (for tests and metrics)
        self.trims = 0

    def handlers(self) -> dict[str, Any]:
        return {"shuffle_receive": self._receive, "shuffle_forget": self._forget, "shuffle_flush": self._flush}

    def start(self) -> None:
        interval = getattr(self.worker, "memory_monitor_interval", 0)
        if self.worker.memory_limits.enabled and interval:
            self.worker.spawn(self._watch_memory(max(interval, 0.1)))

    @property
    def compression(self) -> str | None:
        from shoal import config

        return compression_from_config(config.get("worker.memory.spill-compression"))

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = _budget(self.worker)
        return self._budget

    # ------------------------------------------------------------------ task side

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.worker.loop).result()

    def transfer(self, shuffle: Any, inp: int, df: Any) -> int:
        """(task thread) Split input `inp` and store its pieces at their owners."""
        clock = time.perf_counter
        t0 = clock()
        spec = shuffle.spec
        with self.lock:
            run = self.runs.get(spec.id)
            if run is not None and run["run_id"] in self.dead_runs:
                run = None
        if run is None:
            run = self._call(self.worker.scheduler.request("shuffle_get", spec=spec_to_wire(spec)))
            with self.lock:
                if run["run_id"] not in self.dead_runs:
                    self.runs[spec.id] = run
        run_id = run["run_id"]
        me = self.worker.address
        owner_of = dict(zip(spec.parts, run["owners"]))
        groups: dict[str, list] = {}  # each owner's partitions: neighbours (`assign_owners`)
        for part, owner in owner_of.items():
            groups.setdefault(owner, []).append(part)
        t1 = clock()
        pieces, apart = shuffle.split(df, inp, list(groups.values()))
        del df
        t2 = clock()
        by_owner: dict[str, tuple[list, list]] = {}
        for part, piece in pieces.items():
            parts, payload = by_owner.setdefault(owner_of[part], ([], []))
            parts.append(part)
            payload.append(dumps(piece))
        del pieces
        mine = by_owner.get(me)
        if mine is not None and not apart:
            by_owner[me] = (mine[0], _compact(mine[1]))
        nbytes = sum(p.nbytes for _, payload in by_owner.values() for p in payload)
        t3 = clock()
        self._call(self._enqueue(spec.id, run_id, inp, by_owner, nbytes))
        t4 = clock()
        seconds = self.seconds
        seconds["ask-run"] += t1 - t0
        seconds["split"] += t2 - t1
        seconds["pickle"] += t3 - t2
        seconds["wait-room"] += t4 - t3
        return run_id

    def barrier(self, spec: Any, run_id: int) -> None:
        """(task thread) Every transfer of run `run_id` ran: wait until all their pieces
        are stored, on every worker (the scheduler asks each to flush)."""
        self._call(self.worker.scheduler.request("shuffle_flush", id=spec.id, run_id=run_id))

    def unpack(self, shuffle: Any, part: int, run_id: int) -> Any:
        """(task thread) Output partition `part` of run `run_id`."""
        if run_id == 0:  # a shuffle of no input partitions
            return shuffle.empty(part)
        with self.lock:
            entry = self.buffers.get(shuffle.id)
            dead = run_id in self.dead_runs
        if entry is None or entry[0] != run_id:
            if dead or (entry is not None and entry[0] > run_id):
                raise ShuffleClosed(f"shuffle {shuffle.id} run {run_id} was restarted")
            pieces = []  # nothing for this worker's partitions arrived
        else:
            pieces = entry[1].take(part)
        t0 = time.perf_counter()
        freed = sum(p.nbytes for _, p in pieces)
        packed = [(inp, loads(p)) for inp, p in pieces]
        del pieces
        t1 = time.perf_counter()
        out = shuffle.assemble(part, packed)
        del packed
        self.seconds["unpickle"] += t1 - t0
        self.seconds["assemble"] += time.perf_counter() - t1
        if self._note_freed(freed):
            self._trim()
        return out

    # ------------------------------------------------------------------ event loop side

    async def _enqueue(self, sid: str, run_id: int, inp: int, by_owner: dict, nbytes: int) -> None:
        """Start sending one input's pieces; wait first while too much is on its way
        (backpressure: a full receiver acknowledges only after it spilled)."""
        while self.in_flight > 0 and self.in_flight + nbytes > self.in_flight_limit:
            self._landed.clear()
            await self._landed.wait()
        self.in_flight += nbytes
        out = self.outgoing.setdefault((sid, run_id), _Outgoing())
        task = self.worker.spawn(self._send(out, sid, run_id, inp, by_owner))
        out.tasks.add(task)
        task.add_done_callback(lambda t: self._sent(out, nbytes, t))

    def _sent(self, out: _Outgoing, nbytes: int, task: asyncio.Task) -> None:
        out.tasks.discard(task)
        self.in_flight -= nbytes
        self._landed.set()
        if self._note_freed(nbytes):
            self.worker.spawn(asyncio.to_thread(self._trim))

    def _note_freed(self, nbytes: int) -> bool:
        """Count `nbytes` of pieces freed; -> whether the C heap should be trimmed now.
        Pieces are blocks under glibc's mmap threshold, freed in any order: without a
        trim their pages stay in the worker's RSS long after the shuffle is over."""
        with self.lock:
            self._freed += nbytes
            if self._freed < TRIM_EVERY:
                return False
            self._freed = 0
            return True

    def _trim(self) -> None:
        t0 = time.perf_counter()
        if trim_heap():
            self.trims += 1
            self.seconds["trim-heap"] += time.perf_counter() - t0

    async def _send(self, out: _Outgoing, sid: str, run_id: int, inp: int, by_owner: dict) -> None:
        """Send one input's pieces; what fails is kept for the flush to report."""
        me = self.worker.address
        sends = []
        for address, (parts, payload) in by_owner.items():
            if address == me:
                sends.append(self._store(sid, run_id, inp, parts, payload))
            else:
                sends.append(self._send_one(address, sid, run_id, inp, parts, payload))
        results = await asyncio.gather(*sends, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors and out.error is None:
            out.error = next((e for e in errors if not isinstance(e, (CommClosedError, OSError))), errors[0])

    async def _flush(self, peer: Any, id: str, run_id: int) -> None:
        """Return once every piece this worker sent for run `run_id` is stored; raise
        what a send failed with. An owner that could not be reached left: wait for
        the scheduler to restart the run (`ShuffleClosed`)."""
        out = self.outgoing.get((id, run_id))
        if out is None:
            return
        while out.tasks:
            await asyncio.wait(set(out.tasks))
        self.outgoing.pop((id, run_id), None)
        error = out.error
        if error is None:
            return
        if not isinstance(error, (CommClosedError, OSError)):
            raise error
        logger.info("shuffle %s: an owner was unreachable (%s); waiting for the restart", id, error)
        delay, waited = 0.01, 0.0
        while waited < OWNER_LOST_TIMEOUT:
            if await self.worker.scheduler.request("shuffle_status", id=id) != run_id:
                raise ShuffleClosed(f"shuffle {id} run {run_id} was restarted (an owner left)")
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 1.0)
        raise RuntimeError(f"shuffle {id}: an owner is unreachable ({error}) and the shuffle was not restarted")

    async def _send_one(self, address: str, sid: str, run_id: int, inp: int, parts: list, payload: list) -> None:
        peer = await self.worker.pool.get(address)
        await peer.request("shuffle_receive", id=sid, run_id=run_id, inp=inp, parts=parts, pieces=payload)

    async def _receive(self, peer: Any, id: str, run_id: int, inp: int, parts: list, pieces: list) -> None:
        await self._store(id, run_id, inp, parts, pieces)

    async def _store(self, sid: str, run_id: int, inp: int, parts: list, pieces: list) -> None:
        buf = self._buffer(sid, run_id)
        if buf is None:
            return  # a piece of a run that is over
        buf.add(inp, dict(zip(parts, pieces)))
        if self.memory_bytes() > self.budget:
            await self.spill(self.budget // 2)

    def memory_bytes(self) -> int:
        """Bytes of pieces held in memory, over all runs."""
        with self.lock:
            return sum(b.memory_bytes for _, b in self.buffers.values())

    async def spill(self, goal: int) -> None:
        """Move pieces to disk, the largest runs' first, until at most `goal` bytes are
        held in memory (in a thread; several may run at once)."""
        with self.lock:
            bufs = sorted((b for _, b in self.buffers.values()), key=lambda b: -b.memory_bytes)
        excess = sum(b.memory_bytes for b in bufs) - goal
        for b in bufs:
            if excess <= 0:
                break
            moved = await asyncio.to_thread(self._spill, b, max(b.memory_bytes - excess, 0))
            self.spilled_bytes += moved
            excess -= moved

    def _spill(self, buf: ShardBuffer, goal: int) -> int:
        """(a thread) Spill `buf` down to `goal` bytes, then trim the C heap."""
        moved = buf.spill(goal)
        if moved:
            self._trim()
        return moved

    async def _watch_memory(self, interval: float) -> None:
        """Pieces are memory the worker's own manager cannot spill: when the process is
        past the worker's `spill` threshold, move them to disk, so a worker that pauses
        (and so runs no unpack) never stays paused because of them."""
        import psutil

        limits = self.worker.memory_limits
        threshold = limits.bytes_at(limits.spill) if limits.spill else limits.bytes_at(limits.pause)
        if not threshold or threshold == float("inf"):
            return
        proc = psutil.Process()
        while True:
            await asyncio.sleep(interval)
            if self.buffers and proc.memory_info().rss > threshold and self.memory_bytes():
                await self.spill(0)

    def _buffer(self, sid: str, run_id: int) -> ShardBuffer | None:
        old = None
        with self.lock:
            if run_id in self.dead_runs:
                return None
            entry = self.buffers.get(sid)
            if entry is not None:
                if entry[0] == run_id:
                    return entry[1]
                if entry[0] > run_id:
                    return None
                old = entry[1]
                self._bury(entry[0])
            directory = os.path.join(self.worker.local_directory, f"shuffle-{sid}-{run_id}")
            buf = ShardBuffer(directory, self.compression)
            self.buffers[sid] = (run_id, buf)
        if old is not None:
            old.close()
        return buf

    def _bury(self, run_id: int) -> None:
        self.dead_runs[run_id] = None
        while len(self.dead_runs) > _DEAD_RUNS:
            self.dead_runs.popitem(last=False)

    async def _forget(self, peer: Any, id: str, run_id: int) -> None:
        self._drop_outgoing(id, run_id)
        with self.lock:
            self._bury(run_id)
            known = self.runs.get(id)
            if known is not None and known["run_id"] <= run_id:
                del self.runs[id]
            entry = self.buffers.get(id)
            if entry is None or entry[0] > run_id:
                return
            del self.buffers[id]
        await asyncio.to_thread(self._close, entry[1])

    def _close(self, buf: ShardBuffer) -> None:
        buf.close()
        self._trim()

    def _drop_outgoing(self, id: str, run_id: int) -> None:
        for key in [k for k in self.outgoing if k[0] == id and k[1] <= run_id]:
            del self.outgoing[key]  # its files may be many

    # ------------------------------------------------------------------ metrics, close

    def metrics(self) -> dict:
        with self.lock:
            bufs = [b for _, b in self.buffers.values()]
        return {
            "runs": len(bufs),
            "memory_bytes": sum(b.memory_bytes for b in bufs),
            "disk_bytes": sum(b.disk_bytes for b in bufs),
            "spilled_bytes_total": self.spilled_bytes,
            "heap_trims": self.trims,
            "seconds": dict(self.seconds),
        }

    def close(self) -> None:
        with self.lock:
            bufs = [b for _, b in self.buffers.values()]
            self.buffers.clear()
            self.runs.clear()
        for b in bufs:
            b.close()
