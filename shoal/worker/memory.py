"""The worker's memory: where results live, when they go to disk, when the worker pauses.

Two parts, kept apart so the decisions can be tested without a disk:

- **The policy** (`MemoryLimits`, `spill_amount`, `pause_wanted`): PURE. From the
  managed bytes held in memory, the process's resident memory and the thresholds under
  `shoal.worker.memory` it says how many bytes to move to disk and whether the worker
  should stop taking work. The worker state machine asks it on every `MemorySample`.
  - `target` (0.6): managed memory above `target` × `memory_limit` is spilled, least
    recently used first, until it is back at `target`;
  - `spill` (0.7): process memory above `spill` × `memory_limit` spills managed data
    until process memory would be back at `target`;
  - `pause` (0.8): process memory above it pauses the worker (no new tasks started, no
    new data fetched; it still serves what it holds); it resumes below it;
  - `terminate` (0.95) belongs to the nanny. `False`/`None` disables a threshold;
    `memory_limit=0` disables all of them.

- **The store** (`SpillStore`): the mapping a worker's results live in. It is a
  `zict.Buffer` (an LRU mapping in memory over files in the worker's local directory):
  zict does the hard part, moving keys between the two under concurrent access from the
  event loop, the spill thread and task threads. Nothing is spilled on insertion (no disk
  I/O on the event loop): the worker's spill thread calls `evict_bytes` when the policy
  says so. A value read back for a task comes back to memory in the task's thread; a peer
  or client fetch of a spilled key gets its bytes as they are on disk (`serialized`),
  without unpickling them into the worker's heap. Values are written in the wire's form
  (pickle protocol 5 with out-of-band buffers, no extra copies), each large frame
  compressed with lz4 when the package is installed and the frame compresses.
  `AppendFiles` writes the same form, one file per group of values read back together
  (the shuffle service's pieces, one file per output partition).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import shutil
import struct
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Iterator

import msgpack
import zict

from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.utils import Key
from shoal.worker.sizeof import sizeof

logger = logging.getLogger("shoal.worker")

try:  # optional: a well-kept compressor; spilling works without it
    import lz4.block as _lz4
except ImportError:  # pragma: no cover - depends on the environment
    _lz4 = None


# ---------------------------------------------------------------------------- policy (PURE)


def _fraction(value: Any, name: str) -> float | None:
    if value is None or value is False:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"shoal.worker.memory.{name} must be a fraction or False, got {value!r}") from None
    if not 0 < f <= 1:
        raise ValueError(f"shoal.worker.memory.{name} must be in (0, 1] or False, got {value!r}")
    return f


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """The memory limit (bytes; 0: none) and the fractions of it that trigger spilling
    and pausing (None: that threshold is off)."""

    limit: int = 0
    target: float | None = None
    spill: float | None = None
    pause: float | None = None

    @classmethod
    def from_config(cls, limit: int | None, **overrides: Any) -> MemoryLimits:
        """The thresholds under `shoal.worker.memory`, unless given (`target=False` ...)."""
        from shoal import config

        values = {}
        for name in ("target", "spill", "pause"):
            raw = overrides[name] if name in overrides else config.get(f"worker.memory.{name}")
            values[name] = _fraction(raw, name)
        return cls(int(limit or 0), **values)

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and any(f is not None for f in (self.target, self.spill, self.pause))

    @property
    def spills(self) -> bool:
        return self.limit > 0 and (self.target is not None or self.spill is not None)

    def bytes_at(self, fraction: float | None) -> float:
        return float("inf") if fraction is None or not self.limit else fraction * self.limit


def spill_amount(limits: MemoryLimits, managed: int, process: int) -> int:
    """Bytes of managed memory to move to disk now (0: none), given the managed bytes
    held in memory and the process's resident memory."""
    if not limits.spills or managed <= 0:
        return 0
    need = 0.0
    target = limits.bytes_at(limits.target)
    if managed > target:
        need = managed - target
    if process > limits.bytes_at(limits.spill):
        # back down to target (or, with target off, to the spill threshold itself)
        floor = target if limits.target is not None else limits.bytes_at(limits.spill)
        need = max(need, process - floor)
    return math.ceil(min(need, managed))


def pause_wanted(limits: MemoryLimits, process: int) -> bool:
    """Whether the worker should stop taking new work at this process memory."""
    return limits.limit > 0 and limits.pause is not None and process > limits.bytes_at(limits.pause)


# ---------------------------------------------------------------------------- store (I/O)

#: frames smaller than this are written as they are (not worth a compression attempt)
_COMPRESS_MIN = 64 * 1024
#: bytes of a frame tried first: the frame is compressed only if this sample shrinks to
#: at most `_COMPRESS_RATIO` (random floats do not compress; don't pay for trying)
_SAMPLE = 16 * 1024
_COMPRESS_RATIO = 0.9
_META = struct.Struct("<I")
_MISSING = object()


def compression_from_config(value: Any) -> str | None:
    """`shoal.worker.memory.spill-compression`: "auto" (lz4 if installed), "lz4", or
    None/False (off)."""
    if value in (None, False, "none", "None", "false", "False"):
        return None
    if value == "auto":
        return "lz4" if _lz4 is not None else None
    if value == "lz4":
        if _lz4 is None:
            raise ValueError("spill-compression 'lz4' needs the lz4 package: pip install lz4")
        return "lz4"
    raise ValueError(f"unknown spill-compression {value!r}: use 'auto', 'lz4' or False")


def _maybe_compress(frame: Any, compression: str | None) -> tuple[str, Any]:
    mv = memoryview(frame).cast("B")
    if compression != "lz4" or mv.nbytes < _COMPRESS_MIN:
        return "", mv
    sample = _lz4.compress(mv[:_SAMPLE], store_size=False)
    if len(sample) > _COMPRESS_RATIO * _SAMPLE:
        return "", mv
    packed = _lz4.compress(mv, store_size=True)
    if len(packed) > _COMPRESS_RATIO * mv.nbytes:
        return "", mv
    return "lz4", packed


_libc_trim: Any = None


def trim_heap() -> bool:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``: also the
    free pages inside the heap, which the trim threshold never returns). Memory freed
    in many blocks under the mmap threshold (received frames, shuffle pieces) otherwise
    stays in the process's RSS. -> whether anything could be done (False off glibc).
    Takes milliseconds on a big heap: call it from a thread, after freeing a lot."""
    global _libc_trim
    if _libc_trim is None:
        try:
            import ctypes

            _libc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _libc_trim = False
    if _libc_trim is False:
        return False
    _libc_trim(0)
    return True


def encode(p: Pickled, compression: str | None) -> tuple[list, int]:
    """How a value in the wire's form is written to disk: the chunks (u32 length of a
    msgpack header ``[[codec, stored length, original length], ...]``, the header, then
    the frames, lz4 where it pays) and their total size."""
    meta = []
    out = []
    for frame in (p.header, *p.buffers):
        codec, stored = _maybe_compress(frame, compression)
        n = memoryview(stored).nbytes
        meta.append((codec, n, memoryview(frame).nbytes))
        out.append(stored)
    head = msgpack.packb(meta)
    return [_META.pack(len(head)), head, *out], _META.size + len(head) + sum(n for _, n, _ in meta)


def decode(raw: memoryview, pos: int = 0) -> tuple[Pickled, int]:
    """The value `encode` wrote at `pos` of `raw` (frames are views of `raw` unless
    compressed), and the position after it."""
    (n,) = _META.unpack_from(raw, pos)
    pos += _META.size
    meta = msgpack.unpackb(raw[pos : pos + n])
    pos += n
    frames = []
    for codec, stored, original in meta:
        chunk = raw[pos : pos + stored]
        pos += stored
        if codec == "lz4":
            chunk = memoryview(bytearray(_lz4.decompress(chunk)))
            assert chunk.nbytes == original
        frames.append(chunk)
    return Pickled(frames[0], frames[1:]), pos


class SpillFiles(MutableMapping):
    """key -> value, each value a file of its serialized frames in `directory`
    (`zict.File` does the files). Layout of a file: u32 length of a msgpack header
    ``[[codec, stored length, original length], ...]`` (frame 0 is the pickle stream, the
    rest its out-of-band buffers), then the frames."""

    def __init__(self, directory: str, compression: str | None = None, weight: Any = None):
        self.directory = directory
        self.compression = compression
        #: (key, value) -> the in-memory size to account for a value written
        self.weight = weight or (lambda key, value: sizeof(value))
        self.files = zict.File(directory)
        #: key -> (in-memory size the value had, bytes on disk)
        self.sizes: dict[Key, tuple[int, int]] = {}
        self.disk_bytes = 0
        self.memory_bytes = 0
        #: seconds spent writing and reading (for the worker's metrics)
        self.write_seconds = 0.0
        self.read_seconds = 0.0

    # keys are any dask key; file names are their repr (distinct for distinct keys)
    def __setitem__(self, key: Key, value: Any) -> None:
        t0 = time.perf_counter()
        weight = self.weight(key, value)
        self._write(key, dumps(value), weight, t0)

    def set_serialized(self, key: Key, p: Pickled, weight: int) -> None:
        """Store a value given in the wire's form (the shuffle service's pieces arrive
        so), accounted as `weight` bytes in memory; read back like any other."""
        self._write(key, p, weight, time.perf_counter())

    def _write(self, key: Key, p: Pickled, weight: int, t0: float) -> None:
        chunks, disk = encode(p, self.compression)
        try:
            self.files[repr(key)] = chunks
        except OSError:
            self._remove_orphans()
            raise
        self._forget_size(key)
        self.sizes[key] = (weight, disk)
        self.memory_bytes += weight
        self.disk_bytes += disk
        self.write_seconds += time.perf_counter() - t0

    def serialized(self, key: Key) -> Pickled:
        """The value of `key` as the wire carries it, read from disk without unpickling."""
        t0 = time.perf_counter()
        p, _ = decode(memoryview(self.files[repr(key)]))
        self.read_seconds += time.perf_counter() - t0
        return p

    def __getitem__(self, key: Key) -> Any:
        return loads(self.serialized(key))

    def __delitem__(self, key: Key) -> None:
        del self.files[repr(key)]
        self._forget_size(key)

    def _forget_size(self, key: Key) -> None:
        old = self.sizes.pop(key, None)
        if old is not None:
            self.memory_bytes -= old[0]
            self.disk_bytes -= old[1]

    def __contains__(self, key: object) -> bool:
        return key in self.sizes

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self.sizes))

    def __len__(self) -> int:
        return len(self.sizes)

    def _remove_orphans(self) -> None:
        """A write that failed half-way (a full disk) leaves a partial file zict does
        not know of: remove it."""
        known = set(self.files.filenames.values())
        try:
            for name in os.listdir(self.directory):
                if name not in known:
                    os.remove(os.path.join(self.directory, name))
        except OSError:
            pass


class AppendFiles:
    """Values appended to one file per group and read back a whole group at once: the
    shuffle service's pieces (many small values per output partition, each written once
    and all read together when the partition is assembled). One file per group instead of
    one per value: no file is created or removed per value, and at most `max_open` files
    stay open for appending. Each value is tagged with an int (the input partition) and
    written as `encode` writes it. Thread-safe: spills may run in several threads."""

    _TAG = struct.Struct("<q")

    def __init__(self, directory: str, compression: str | None = None, max_open: int = 64):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.compression = compression
        self.max_open = max_open
        self.lock = threading.Lock()
        self._handles: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        #: group -> bytes on disk
        self.sizes: dict[Any, int] = {}
        #: groups read back: what is appended to them later is dropped
        self.taken: set = set()
        self.disk_bytes = 0
        self.closed = False

    def _path(self, group: Any) -> str:
        return os.path.join(self.directory, str(group))

    def append(self, group: Any, tag: int, p: Pickled) -> bool:
        """Append `p` to `group`'s file. False (and nothing written) if the group was
        read back already. A failed write (a full disk) leaves the file as it was and
        raises."""
        chunks, n = encode(p, self.compression)
        n += self._TAG.size
        with self.lock:
            if group in self.taken or self.closed:
                return False
            f = self._handles.pop(group, None)
            if f is None:
                if len(self._handles) >= self.max_open:
                    self._handles.popitem(last=False)[1].close()
                f = open(self._path(group), "ab")  # noqa: SIM115 - kept open across calls
            self._handles[group] = f
            end = f.tell()
            try:
                f.write(self._TAG.pack(tag))
                for c in chunks:
                    f.write(c)
                f.flush()
            except OSError:
                try:
                    f.truncate(end)
                except OSError:
                    pass
                raise
            self.sizes[group] = self.sizes.get(group, 0) + n
            self.disk_bytes += n
        return True

    def take(self, group: Any) -> list[tuple[int, Pickled]]:
        """Every (tag, value) appended to `group`, in order; the file is removed."""
        with self.lock:
            self.taken.add(group)
            f = self._handles.pop(group, None)
            if f is not None:
                f.close()
            n = self.sizes.pop(group, 0)
            self.disk_bytes -= n
        if not n:
            return []
        path = self._path(group)
        with open(path, "rb") as fh:  # no appends any more: read outside the lock
            raw = memoryview(fh.read())
        os.remove(path)
        out = []
        pos = 0
        while pos < raw.nbytes:
            (tag,) = self._TAG.unpack_from(raw, pos)
            p, pos = decode(raw, pos + self._TAG.size)
            out.append((tag, p))
        return out

    def __len__(self) -> int:
        """How many groups have values on disk."""
        return len(self.sizes)

    def close(self) -> None:
        """Close the open files (the owner removes the directory)."""
        with self.lock:
            self.closed = True
            while self._handles:
                self._handles.popitem()[1].close()


class SpillStore(zict.Buffer):
    """The worker's data: a `zict.Buffer` of an in-memory LRU over `SpillFiles`. The
    weight of a value is its size as the worker measured it (`nbytes`, shared with the
    state machine, which records a result's size before storing it); nothing is evicted
    on insertion, only by `evict_bytes` in the spill thread."""

    def __init__(self, directory: str, nbytes: dict, compression: str | None = None):
        self.directory = directory
        self.nbytes = nbytes
        self.spilled = SpillFiles(directory, compression, weight=self._weight)
        super().__init__({}, self.spilled, float("inf"), weight=self._weight)
        #: totals since start: keys and bytes moved to disk, read back to memory
        self.spill_count = 0
        self.spill_bytes = 0
        self.unspill_count = 0
        #: set when the worker closes: a spill in progress stops after the key it writes
        self.closing = False
        self.slow_to_fast_callbacks.append(self._unspilled)

    def _weight(self, key: Key, value: Any) -> int:
        n = self.nbytes.get(key)
        return sizeof(value) if n is None else n

    def _unspilled(self, key: Key, value: Any) -> None:
        self.unspill_count += 1

    @property
    def memory_bytes(self) -> int:
        """Managed bytes held in memory."""
        return int(self.fast.total_weight)

    @property
    def spilled_bytes(self) -> int:
        """Managed bytes on disk, counted at their in-memory size."""
        return self.spilled.memory_bytes

    @property
    def disk_bytes(self) -> int:
        return self.spilled.disk_bytes

    def evict_bytes(self, nbytes: int) -> tuple[int, str | None]:
        """Move least recently used values to disk until `nbytes` of managed memory are
        freed or nothing is left in memory. -> (bytes freed, error text or None). A value
        whose write fails stays in memory (zict keeps it): nothing is lost."""
        freed = 0
        while freed < nbytes and not self.closing:
            try:
                key, _, weight = self.fast.evict()
            except KeyError:  # nothing left in memory
                break
            except OSError as e:
                return freed, f"could not spill to {self.directory}: {e.strerror or e}"
            if key is not None:
                freed += int(weight)
                self.spill_count += 1
                self.spill_bytes += int(weight)
        return freed, None

    def serialized(self, key: Key) -> Pickled:
        """`key`'s value in the wire's form: the bytes on disk as they are for a spilled
        key (no unpickling, and it stays on disk), else the in-memory value pickled."""
        for _ in range(3):  # a task thread may bring it back to memory meanwhile
            with self.lock:
                value = self.fast.d.get(key, _MISSING)
            if value is not _MISSING:
                return dumps(value)
            try:
                return self.spilled.serialized(key)
            except KeyError:
                continue
        raise KeyError(key)

    def close(self) -> None:
        """Forget everything and remove the spill directory."""
        self.closing = True
        self.fast.d.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __del__(self) -> None:
        """Nothing: zict closes a mapping when it is garbage-collected, but a collection
        runs in whatever thread allocates at that moment, for example inside the
        profiler's `sys._current_frames()`, which holds CPython's thread-state lock:
        removing files there releases the GIL and deadlocks the process. The worker
        closes its store (removing the directory) when it closes."""
