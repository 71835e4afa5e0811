"""The statistical profiler: call trees of sampled stacks, and the thread that samples them.

A profile is a call tree in `distributed.profile`'s shape, plain msgpack data::

    {"count": samples through this frame,
     "children": {identifier: <node>, ...},
     "description": {"filename", "name", "line_number", "line"},
     "identifier": "name;filename;first line" (the root: "root")}

`process` adds one sampled stack to a tree, `merge` sums trees. `Sampler` owns one daemon
thread that every `interval` walks `sys._current_frames()` of the threads its `targets`
callable names (a worker: the threads running tasks, grouped by task prefix; plus an
optional "server" thread, the event loop), and every `cycle` closes the current trees
into a bounded history of `(start, stop, {group: tree})`, whose cycles older than a
minute are merged into coarser buckets (`COARSEN`). It also samples the process's
RSS every `memory_interval` into a bounded `(time, rss)` history. Times are wall-clock
(`time.time()`), like the task stream, so a report can line the two up. Nothing here
runs on a hot path of task execution: the cost is one thread waking up every `interval`.
"""

from __future__ import annotations

import collections
import linecache
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType as _Frame
from typing import Any

from shoal import _gc

__all__ = ["Sampler", "create", "identifier", "merge", "path", "process", "sampler_from_config"]

logger = logging.getLogger("shoal.profile")

#: frames deeper than this are not recorded (msgpack nests at most ~500 levels)
MAX_DEPTH = 200

#: the group holding samples of the server (event-loop) thread
SERVER = "__server__"

#: frame descriptions a sampler shares among its trees at most (see `Sampler._known`)
MAX_KNOWN = 20_000

#: (age, width) in seconds: profile cycles older than `age` are merged into buckets of
#: `width` (full resolution for the last minute, 10 s buckets to ten minutes, then minutes)
COARSEN = ((60.0, 10.0), (600.0, 60.0))


def create() -> dict:
    """An empty profile tree."""
    return {
        "count": 0,
        "children": {},
        "identifier": "root",
        "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
    }


def identifier(frame: Any) -> str:
    co = frame.f_code
    return f"{co.co_name};{co.co_filename};{co.co_firstlineno}"


def _describe(frame: Any) -> dict:
    co = frame.f_code
    lineno = frame.f_lineno or 0  # None while a frame has no line (e.g. starting up)
    line = linecache.getline(co.co_filename, lineno, frame.f_globals).strip() if lineno else ""
    return {"filename": co.co_filename, "name": co.co_name, "line_number": lineno, "line": line}


def process(frame: Any, tree: dict, stop: Any = None, skip: Callable[[str], bool] | None = None) -> None:
    """Add the stack ending in `frame` to `tree`: from the outermost frame inwards, up to
    (not including) a frame running code object `stop`; frames whose filename `skip`
    accepts are left out."""
    for node in path(frame, tree, stop, skip):
        node["count"] += 1


def path(
    frame: Any, tree: dict, stop: Any = None, skip: Callable[[str], bool] | None = None, known: dict | None = None
) -> list[dict]:
    """The nodes of `tree` (root first) that a sample of this stack counts in, created
    with count 0 where missing (see `process`). New nodes take their identifier string
    and description dict from `known` (``(identifier, line) -> (identifier,
    description)``, filled as it goes) when given: trees that share them must not
    change them."""
    stack = []
    while frame is not None and type(frame) is _Frame:  # (see Sampler.sample)
        code = frame.f_code
        if code is stop:
            break
        if skip is None or not skip(code.co_filename):
            stack.append(frame)
        frame = frame.f_back
    if len(stack) > MAX_DEPTH:
        stack = stack[-MAX_DEPTH:]
    node = tree
    nodes = [node]
    for f in reversed(stack):
        co = f.f_code
        ident = f"{co.co_name};{co.co_filename};{co.co_firstlineno}"
        children = node["children"]
        child = children.get(ident)
        if child is None:
            if known is None:
                description = _describe(f)
            else:
                hit = known.get((ident, f.f_lineno))
                if hit is None:
                    hit = known[ident, f.f_lineno] = (ident, _describe(f))
                ident, description = hit
            child = children[ident] = {"count": 0, "children": {}, "identifier": ident, "description": description}
        nodes.append(child)
        node = child
    return nodes


def merge(*trees: dict) -> dict:
    """One tree summing `trees` (which are left unchanged)."""
    out = create()
    for t in trees:
        _add(out, t)
    return out


def _merge_groups(a: dict, b: dict) -> dict:
    """{group: tree} of two cycles, summed into `a` from `b`, whose nodes `a` adopts
    where it has none: both are history's own, never handed out, and `b` is dropped."""
    for group, tree in b.items():
        mine = a.get(group)
        if mine is None:
            a[group] = tree
        else:
            _add(mine, tree, adopt=True)
    return a


def _add(into: dict, tree: dict, adopt: bool = False) -> None:
    """Sum `tree` into `into`: new nodes are copies (`tree`'s own with `adopt`)."""
    into["count"] += tree["count"]
    children = into["children"]
    for ident, child in tree["children"].items():
        mine = children.get(ident)
        if mine is None:
            if adopt:
                children[ident] = child
                continue
            mine = children[ident] = {
                "count": 0, "children": {}, "identifier": ident, "description": dict(child["description"])
            }  # fmt: skip
        _add(mine, child, adopt)


class _FilenameFilter:
    """`skip(filename)`: whether a frame belongs to the machinery around a task (cached)."""

    def __init__(self, fragments: Iterable[str]):
        self.fragments = tuple(fragments)
        self.cache: dict[str, bool] = {}

    def __call__(self, filename: str) -> bool:
        hit = self.cache.get(filename)
        if hit is None:
            hit = self.cache[filename] = any(f in filename for f in self.fragments)
        return hit


class Sampler:
    """A sampling thread. `targets()` returns `[(thread ident, group)]` to sample now;
    `stop_code` ends each stack walk (e.g. the worker's `_execute`), `skip_files` lists
    path fragments of frames to leave out. `interval`/`cycle`/`memory_interval` in
    seconds; an `interval` of 0 turns the profiler off, a `memory_interval` of 0 the RSS
    history. `start()` and `close()` (joins the thread) are the owner's to call."""

    def __init__(
        self,
        targets: Callable[[], Iterable[tuple[int, str]]],
        *,
        interval: float = 0.01,
        cycle: float = 1.0,
        history: int = 3600,
        memory_interval: float = 0.0,
        memory_history: int = 10_000,
        stop_code: Any = None,
        skip_files: Iterable[str] = (),
        name: str = "shoal-profile",
        memory_extra: Callable[[], tuple[int, ...]] | None = None,
    ):
        self.targets = targets
        self.interval = float(interval)
        self.cycle = max(float(cycle), self.interval)
        self.memory_interval = float(memory_interval)
        self.stop_code = stop_code
        self.skip = _FilenameFilter(skip_files) if skip_files else None
        self.name = name
        #: closed cycles: (start, stop, {group: tree}); empty cycles are not kept
        self.history: collections.deque[tuple[float, float, dict]] = collections.deque(maxlen=max(history, 1))
        #: (time, rss bytes, *memory_extra()) samples of this process
        self.memory: collections.deque[tuple] = collections.deque(maxlen=max(memory_history, 1))
        #: more figures recorded with each memory sample (a worker's managed and spilled bytes)
        self.memory_extra = memory_extra
        self._current: dict[str, dict] = {}
        #: this cycle's stacks seen so far: ids of (group, code objects...) -> (those objects, tree nodes)
        self._paths: dict[tuple, tuple[list, list[dict]]] = {}
        #: (identifier, line) -> (identifier, description) of the frames sampled: every
        #: tree of the history shares them (`path`), so a node costs its dicts and count,
        #: not ~400 more bytes of strings; dropped when it holds more than `MAX_KNOWN`
        self._known: dict[tuple, tuple[str, dict]] = {}
        self._current_start = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0 or self.memory_interval > 0

    def start(self) -> None:
        if self._thread is not None or not self.enabled:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        profiling = self.interval > 0
        tick = self.interval if profiling else self.memory_interval
        if profiling and self.memory_interval > 0:
            tick = min(tick, self.memory_interval)
        next_memory = 0.0
        next_cycle = time.time() + self.cycle
        wait = self._stop.wait
        while not wait(tick):
            now = time.time()
            try:
                if profiling:
                    self.sample()
                    if now >= next_cycle:
                        self.rotate(now)
                        next_cycle = now + self.cycle
                if self.memory_interval > 0 and now >= next_memory:
                    self.sample_memory(now)
                    next_memory = now + self.memory_interval
            except Exception:  # a bad sample must not end profiling for good
                logger.exception("%s: sampling failed", self.name)

    def sample(self) -> None:
        """Take one sample of every target thread. A stack seen before in this cycle (the
        same code objects) reuses its list of tree nodes: one walk and one dict lookup."""
        # no garbage collection inside: a finalizer that releases the GIL there (file or
        # socket I/O) deadlocks CPython 3.11, which holds its thread-state lock
        # (python/cpython#106883)
        with _gc.paused():
            frames = sys._current_frames()
        stop, skip = self.stop_code, self.skip
        with self._lock:
            current, paths = self._current, self._paths
            for ident, group in self.targets():
                frame = frames.get(ident)
                if frame is None:
                    continue
                server = group == SERVER
                end = None if server else stop
                codes = [group]
                f = frame
                while f is not None:
                    if type(f) is not _Frame:
                        # CPython 3.11 can hand out a non-frame as f_back of a frame whose
                        # thread is returning while we walk it: drop this sample
                        codes = None
                        break
                    code = f.f_code
                    if code is end:
                        break
                    codes.append(code)
                    f = f.f_back
                if codes is None:
                    continue
                # keyed by identity; the entry holds the code objects, so no id is reused
                key = tuple(map(id, codes))
                hit = paths.get(key)
                if hit is None:
                    tree = current.get(group)
                    if tree is None:
                        tree = current[group] = create()
                    hit = paths[key] = (codes, path(frame, tree, end, None if server else skip, self._known))
                for node in hit[1]:
                    node["count"] += 1
        del frames

    def rotate(self, now: float | None = None) -> None:
        """Close the current cycle into the history, and coarsen the old part of it."""
        now = time.time() if now is None else now
        with self._lock:
            if self._current:
                self.history.append((self._current_start, now, self._current))
            if len(self._known) > MAX_KNOWN:
                self._known = {}
            self._current = {}
            self._paths = {}
            self._current_start = now
            self._coarsen(now)

    def _coarsen(self, now: float) -> None:
        """Merge the cycles older than each tier's age (`COARSEN`) into buckets of that
        tier's width, and forget those older than the history's span (`history`
        cycles). A tree costs about as much as the distinct stacks it holds, and
        neighbouring cycles share most of theirs, so an hour is ~170 trees instead of
        3,600. Queries lose only the time resolution of old cycles (`get_profile`
        takes whole cycles anyway)."""
        history = self.history
        span = (history.maxlen or 1) * self.cycle
        while history and history[0][1] < now - span:
            history.popleft()
        if len(history) < 2 or history[0][1] >= now - COARSEN[0][0]:
            return  # nothing old enough to merge
        out: list[tuple[float, float, dict]] = []
        for entry in history:
            start, stop, groups = entry
            width = next((w for age, w in reversed(COARSEN) if stop < now - age), None)
            if out and width is not None:
                p_start, p_stop, p_groups = out[-1]
                if p_stop < now - COARSEN[0][0] and stop - p_start <= width:
                    out[-1] = (p_start, stop, _merge_groups(p_groups, groups))
                    continue
            out.append(entry)
        if len(out) < len(history):
            history.clear()
            history.extend(out)

    def sample_memory(self, now: float | None = None) -> None:
        try:
            import psutil

            if self._process is None:
                self._process = psutil.Process(os.getpid())
            rss = self._process.memory_info().rss
        except Exception:  # noqa: BLE001 - no psutil or the OS refused: no memory history
            self.memory_interval = 0.0
            return
        t = time.time() if now is None else now
        if self.memory_extra is None:
            self.memory.append((t, int(rss)))
        else:
            self.memory.append((t, int(rss), *self.memory_extra()))

    # ---------------------------------------------------------------- queries

    def get_profile(
        self, start: float | None = None, stop: float | None = None, prefix: str | None = None, server: bool = False
    ) -> dict:
        """The merged tree of cycles overlapping [`start`, `stop`] (the open cycle too):
        the server thread's with `server`, else the tasks' (only prefix `prefix`)."""
        with self._lock:
            cycles = list(self.history)
            cycles.append((self._current_start, time.time(), self._current))
            out = create()
            for c_start, c_stop, groups in cycles:
                if (start is not None and c_stop < start) or (stop is not None and c_start > stop):
                    continue
                for group, tree in groups.items():
                    if server:
                        if group == SERVER:
                            _add(out, tree)
                    elif group != SERVER and (prefix is None or group == prefix):
                        _add(out, tree)
        return out

    def get_memory(self, start: float | None = None, stop: float | None = None) -> list[tuple]:
        """`(time, rss[, extra figures...])` samples in [`start`, `stop`]."""
        return [s for s in list(self.memory) if (start is None or s[0] >= start) and (stop is None or s[0] <= stop)]


def sampler_from_config(
    section: str, targets: Callable[[], Iterable[tuple[int, str]]], *, memory: bool = False, **kwargs: Any
) -> Sampler:
    """A `Sampler` set up from `shoal.<section>.profile` (and, with `memory`,
    `shoal.<section>.memory-history`)."""
    from shoal import config

    enabled = bool(config.get(f"{section}.profile.enabled", True))
    interval = config.get_timedelta(f"{section}.profile.interval") if enabled else 0.0
    memory_interval = 0.0
    memory_length = 1
    if memory:
        memory_interval = config.get_timedelta(f"{section}.memory-history.interval")
        memory_length = int(config.get(f"{section}.memory-history.length"))
    return Sampler(
        targets,
        interval=interval,
        cycle=config.get_timedelta(f"{section}.profile.cycle"),
        history=int(config.get(f"{section}.profile.history")),
        memory_interval=memory_interval,
        memory_history=memory_length,
        **kwargs,
    )
