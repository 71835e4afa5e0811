"""A worker's receive buffer for one shuffle run: pieces by output partition, in
memory up to a budget, on disk beyond it.

No asyncio here: the worker extension calls `add` on its event loop (cheap: it files
the pieces away), `spill` in a thread when the worker's pieces exceed its budget (the
sender waits for that: backpressure), and `take` in the thread of the task that assembles an
output partition. One lock guards the maps; disk I/O happens outside it, the pieces being
written staying visible in `writing` meanwhile.

Pieces are kept as they travel (`Pickled`: pickle protocol 5 with out-of-band buffers,
never unpickled on the event loop) and go to disk through the worker's memory manager
(`shoal.worker.memory.AppendFiles`: pickle protocol 5 frames, lz4 where it pays, one
append-only file per output partition rather than one file per piece), in a directory of
their own that `close` removes. Every piece is identified by (output partition, input partition): a piece that
arrives twice (a transfer task run again after a worker died) is dropped, and so is a
piece for an output partition already assembled.
"""

from __future__ import annotations

import collections
import shutil
import threading
from typing import Any

from shoal.worker.memory import AppendFiles

__all__ = ["ShardBuffer"]


class ShardBuffer:
    def __init__(self, directory: str, compression: str | None = None):
        self.directory = directory
        self.compression = compression
        self.lock = threading.Lock()
        #: output partition -> {input partition: (piece, nbytes)} held in memory
        self.memory: dict[int, dict[int, tuple[Any, int]]] = {}
        #: input partition -> the output partitions it brought pieces for, oldest first
        self.arrivals: collections.OrderedDict[int, list[int]] = collections.OrderedDict()
        #: (output, input) -> piece, being written to disk right now
        self.writing: dict[tuple[int, int], Any] = {}
        self._files: AppendFiles | None = None
        #: output partition -> the input partitions whose pieces arrived
        self.received: dict[int, set[int]] = {}
        #: output partitions already assembled
        self.taken: set[int] = set()
        self.memory_bytes = 0
        #: totals, for metrics and tests
        self.spilled_bytes = 0
        self.spill_count = 0
        self.duplicates = 0
        self.closed = False

    @property
    def files(self) -> AppendFiles:
        """The pieces on disk (made on first use; spills may run in several threads)."""
        if self._files is None:
            with self.lock:
                if self._files is None:
                    self._files = AppendFiles(self.directory, self.compression)
        return self._files

    @property
    def disk_bytes(self) -> int:
        return self._files.disk_bytes if self._files is not None else 0

    def add(self, inp: int, pieces: dict[int, Any]) -> int:
        """File input partition `inp`'s pieces away. -> the bytes now held in memory
        (the caller spills, before it acknowledges, when that is too much)."""
        with self.lock:
            if self.closed:
                return 0
            new = []
            for part, piece in pieces.items():
                got = self.received.setdefault(part, set())
                if inp in got or part in self.taken:
                    self.duplicates += 1
                    continue
                got.add(inp)
                n = piece.nbytes
                self.memory.setdefault(part, {})[inp] = (piece, n)
                self.memory_bytes += n
                new.append(part)
            if new:
                self.arrivals.setdefault(inp, []).extend(new)
            return self.memory_bytes

    def spill(self, goal: float) -> int:
        """Write pieces to disk, whole inputs at a time and oldest first, until at most
        `goal` bytes are held in memory. Runs in a thread. -> bytes moved. By input:
        the pieces of one message share the buffers they were received in, so only
        spilling all of them gives that memory back."""
        moved = 0
        while True:
            with self.lock:
                if self.closed or self.memory_bytes <= goal or not self.arrivals:
                    return moved
                inp, parts = self.arrivals.popitem(last=False)
                batch = []
                for part in parts:
                    held = self.memory.get(part)
                    if held is None or inp not in held:
                        continue  # taken meanwhile
                    piece, n = held.pop(inp)
                    if not held:
                        del self.memory[part]
                    self.writing[(part, inp)] = piece
                    batch.append((part, piece, n))
            done = 0
            try:
                for part, piece, n in batch:
                    self.files.append(part, inp, piece)  # False: assembled meanwhile, not needed
                    done += 1
                    self.spill_count += 1
            finally:
                with self.lock:
                    for i, (part, piece, n) in enumerate(batch):
                        self.writing.pop((part, inp), None)
                        if i < done:
                            self.memory_bytes -= n
                            moved += n
                        elif part not in self.taken:  # could not be written: keep it in memory
                            self.memory.setdefault(part, {})[inp] = (piece, n)
                    self.spilled_bytes += sum(n for _, _, n in batch[:done])

    def take(self, part: int) -> list[tuple[int, Any]]:
        """The (input partition, piece) pairs of output partition `part` (pieces
        `Pickled`), in input order, forgotten here."""
        with self.lock:
            if part in self.taken:
                raise RuntimeError(f"output partition {part} of this shuffle was assembled already")
            self.taken.add(part)
            inputs = sorted(self.received.get(part, ()))
            held = self.memory.pop(part, {})
            for _, n in held.values():
                self.memory_bytes -= n
            writing = {inp: self.writing[(part, inp)] for inp in inputs if (part, inp) in self.writing}
        files = self._files
        on_disk = dict(files.take(part)) if files is not None else {}
        out = []
        for inp in inputs:
            if inp in held:
                out.append((inp, held[inp][0]))
            elif inp in writing:
                out.append((inp, writing[inp]))
            else:
                out.append((inp, on_disk[inp]))
        return out

    def close(self) -> None:
        """Forget every piece and remove the files."""
        with self.lock:
            self.closed = True
            self.memory.clear()
            self.arrivals.clear()
            self.writing.clear()
            self.memory_bytes = 0
        if self._files is not None:
            self._files.close()
        shutil.rmtree(self.directory, ignore_errors=True)
