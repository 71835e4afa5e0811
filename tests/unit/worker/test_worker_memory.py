"""The worker's memory: the pure spill/pause policy, the state machine's decisions, and
the spilling store on a real directory."""

from __future__ import annotations

import os

import numpy as np
import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads
from shoal.worker.memory import MemoryLimits, SpillStore, compression_from_config, pause_wanted, spill_amount
from shoal.worker.state import (
    ComputeTaskEvent,
    Execute,
    ExecuteSuccess,
    FreeKeysEvent,
    Fetch,
    FetchDone,
    MemorySample,
    SendToScheduler,
    Spill,
    SpillDone,
    WorkerState,
)

SPEC = dumps(((), {}))
MB = 1_000_000
LIMITS = MemoryLimits(1000 * MB, target=0.6, spill=0.7, pause=0.8)


def compute(key, deps=None, run_id=1):
    deps = deps or {}
    return ComputeTaskEvent("s", m.ComputeTask(key, run_id, None, SPEC, (0,), deps, {d: 8 for d in deps}, None, False))


def statuses(out):
    return [i.msg.status for i in out if isinstance(i, SendToScheduler) and isinstance(i.msg, m.WorkerStatus)]


@pytest.fixture
def ws():
    clock = [0.0]
    s = WorkerState(address="tcp://me:1", nthreads=1, validate=True, memory=LIMITS, clock=lambda: clock[0])
    s.test_clock = clock
    yield s
    s.validate_state()


# ---------------------------------------------------------------------------- policy


def test_spills_managed_memory_above_target_back_to_target():
    assert spill_amount(LIMITS, 500 * MB, 550 * MB) == 0
    assert spill_amount(LIMITS, 650 * MB, 660 * MB) == 50 * MB


def test_spills_when_process_memory_passes_spill_until_back_at_target():
    # managed is under target, but unmanaged memory pushes the process past `spill`
    assert spill_amount(LIMITS, 400 * MB, 750 * MB) == 150 * MB
    # never more than what is held in memory
    assert spill_amount(LIMITS, 100 * MB, 950 * MB) == 100 * MB


def test_thresholds_switched_off():
    assert spill_amount(MemoryLimits(1000 * MB, target=None, spill=0.7, pause=0.8), 650 * MB, 650 * MB) == 0
    assert spill_amount(MemoryLimits(1000 * MB, target=None, spill=0.7, pause=0.8), 650 * MB, 750 * MB) == 50 * MB
    off = MemoryLimits(0, target=0.6, spill=0.7, pause=0.8)  # memory_limit=0: nothing applies
    assert not off.enabled and spill_amount(off, 10**12, 10**12) == 0 and not pause_wanted(off, 10**12)
    assert not pause_wanted(MemoryLimits(1000 * MB, 0.6, 0.7, None), 999 * MB)
    assert pause_wanted(LIMITS, 801 * MB) and not pause_wanted(LIMITS, 800 * MB)


def test_limits_from_config_and_bad_values():
    import dask

    with dask.config.set({"shoal.worker.memory.target": False, "shoal.worker.memory.pause": 0.5}):
        lim = MemoryLimits.from_config(100)
    assert (lim.limit, lim.target, lim.spill, lim.pause) == (100, None, 0.7, 0.5)
    with pytest.raises(ValueError, match="shoal.worker.memory.spill"):
        MemoryLimits.from_config(100, spill="lots")
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        MemoryLimits.from_config(100, pause=1.5)
    with pytest.raises(ValueError, match="unknown spill-compression"):
        compression_from_config("zstd")
    assert compression_from_config(False) is None


# ---------------------------------------------------------------------------- state machine


def test_sample_above_target_asks_for_one_spill_at_a_time(ws):
    out = ws.handle_stimulus(MemorySample("m1", 700 * MB, 0, 690 * MB))
    assert [i.nbytes for i in out if isinstance(i, Spill)] == [100 * MB] and ws.spilling
    # while that spill runs, a new sample asks for no second one
    assert not [i for i in ws.handle_stimulus(MemorySample("m2", 720 * MB, 0, 690 * MB)) if isinstance(i, Spill)]
    ws.handle_stimulus(SpillDone("d", 100 * MB))
    assert not ws.spilling and ws.memory_figures[:2] == (620 * MB, 100 * MB)
    assert [i.nbytes for i in ws.handle_stimulus(MemorySample("m3", 620 * MB, 100 * MB, 630 * MB)) if isinstance(i, Spill)]


def test_pause_stops_executions_and_fetches_and_resume_restarts_them(ws):
    out = ws.handle_stimulus(MemorySample("m", 100 * MB, 0, 850 * MB))
    assert statuses(out) == ["paused"] and ws.paused
    out = ws.handle_stimulus(compute("a"), compute("b", {"x": ("tcp://peer:1",)}))
    assert not [i for i in out if isinstance(i, (Execute, Fetch))]  # nothing starts, nothing is fetched
    assert ws.tasks["a"].state == "ready"
    # still paused: no second status message
    assert statuses(ws.handle_stimulus(MemorySample("m", 100 * MB, 0, 810 * MB))) == []
    out = ws.handle_stimulus(MemorySample("m", 100 * MB, 0, 500 * MB))
    assert statuses(out) == ["running"] and not ws.paused
    assert [i.key for i in out if isinstance(i, Execute)] == ["a"]
    assert [i.keys for i in out if isinstance(i, Fetch)] == [("x",)]


def test_paused_worker_still_finishes_what_runs_and_keeps_results(ws):
    ex = [i for i in ws.handle_stimulus(compute("a")) if isinstance(i, Execute)]
    assert ex
    ws.handle_stimulus(MemorySample("m", 100 * MB, 0, 900 * MB))
    out = ws.handle_stimulus(ExecuteSuccess("s", "a", 1, 42, 8, "int", 0, 1, None))
    assert [i.msg.key for i in out if isinstance(i, SendToScheduler) and isinstance(i.msg, m.TaskFinished)] == ["a"]
    assert ws.data["a"] == 42 and ws.nbytes["a"] == 8


def test_failed_spill_pauses_until_a_retry_succeeds(ws):
    ws.handle_stimulus(MemorySample("m", 700 * MB, 0, 700 * MB))
    out = ws.handle_stimulus(SpillDone("d", 0, "could not spill to /x: No space left on device"))
    assert statuses(out) == ["paused"] and ws.spill_error
    # no retry before `spill_retry_seconds` have passed
    assert not [i for i in ws.handle_stimulus(MemorySample("m", 700 * MB, 0, 700 * MB)) if isinstance(i, Spill)]
    assert ws.paused
    ws.test_clock[0] += ws.spill_retry_seconds
    assert [i for i in ws.handle_stimulus(MemorySample("m", 700 * MB, 0, 700 * MB)) if isinstance(i, Spill)]
    out = ws.handle_stimulus(SpillDone("d", 100 * MB))
    assert statuses(out) == ["running"] and ws.spill_error is None


def test_failed_spill_clears_once_data_is_freed(ws):
    ws.handle_stimulus(MemorySample("m", 700 * MB, 0, 700 * MB))
    ws.handle_stimulus(SpillDone("d", 0, "disk full"))
    out = ws.handle_stimulus(MemorySample("m", 300 * MB, 0, 350 * MB))
    assert statuses(out) == ["running"] and ws.spill_error is None


def test_execute_names_dependencies_read_by_the_thread(ws):
    ws.handle_stimulus(compute("x"))
    ws.handle_stimulus(ExecuteSuccess("s", "x", 1, 1, 8, "int", 0, 1, None))
    out = ws.handle_stimulus(compute("y", {"x": ("tcp://me:1",)}))
    [ex] = [i for i in out if isinstance(i, Execute)]
    assert ex.deps == ("x",)


def test_a_fetch_from_one_peer_is_bounded_in_bytes():
    s = WorkerState(address="tcp://me:1", nthreads=1, validate=True, max_bytes_per_fetch=25 * MB)
    deps = {f"d{i}": ("tcp://p:1",) for i in range(5)}
    msg = m.ComputeTask("t", 1, None, SPEC, (0,), deps, {d: 10 * MB for d in deps}, None, False)
    [g] = [i for i in s.handle_stimulus(ComputeTaskEvent("s", msg)) if isinstance(i, Fetch)]
    assert g.keys == ("d0", "d1")  # 20 MB: a third 10 MB key would pass 25 MB
    out = s.handle_stimulus(FetchDone("g", "tcp://p:1", g.keys, {k: "v" for k in g.keys}, {k: 10 * MB for k in g.keys}))
    [g] = [i for i in out if isinstance(i, Fetch)]
    assert g.keys == ("d2", "d3")
    # a key bigger than the limit still goes (alone)
    s2 = WorkerState(address="tcp://me:1", nthreads=1, validate=True, max_bytes_per_fetch=1 * MB)
    [g] = [i for i in s2.handle_stimulus(compute("u", {"big": ("tcp://p:1",), "b2": ("tcp://p:1",)})) if isinstance(i, Fetch)]
    assert len(g.keys) == 2  # sizes of 8 bytes each fit
    msg = m.ComputeTask("v", 1, None, SPEC, (0,), {"huge": ("tcp://q:1",)}, {"huge": 5 * MB}, None, False)
    [g] = [i for i in s2.handle_stimulus(ComputeTaskEvent("s", msg)) if isinstance(i, Fetch)]
    assert g.keys == ("huge",)


def test_sizes_are_recorded_before_values_are_stored():
    """The store weighs a value by the size the state machine recorded for it."""
    seen = {}

    class Store(dict):
        def __setitem__(self, key, value):
            seen[key] = nbytes.get(key)
            super().__setitem__(key, value)

    nbytes: dict = {}
    s = WorkerState(address="tcp://me:1", nthreads=1, data=Store(), nbytes=nbytes, validate=True)
    s.handle_stimulus(compute("a"))
    s.handle_stimulus(ExecuteSuccess("s", "a", 1, "v", 123, "str", 0, 1, None))
    g = [i for i in s.handle_stimulus(compute("b", {"x": ("tcp://p:1",)})) if isinstance(i, Fetch)][0]
    s.handle_stimulus(FetchDone("g", "tcp://p:1", g.keys, {"x": "w"}, {"x": 456}))
    assert seen == {"a": 123, "x": 456}


# ---------------------------------------------------------------------------- the store, on disk


@pytest.fixture(params=[None, "lz4"])
def store(request, tmp_path):
    if request.param == "lz4":
        pytest.importorskip("lz4")
    nbytes: dict = {}
    s = SpillStore(str(tmp_path / "spill"), nbytes, compression=request.param)
    s.test_nbytes = nbytes
    yield s
    s.close()


def put(store, key, value, n):
    store.test_nbytes[key] = n
    store[key] = value


def test_store_spills_least_recently_used_and_reads_back(store):
    a, b = np.arange(100_000.0), np.zeros(200_000)  # zeros compress, arange hardly
    put(store, "a", a, a.nbytes)
    put(store, ("b", 1), b, b.nbytes)
    assert store.memory_bytes == a.nbytes + b.nbytes and not os.listdir(store.directory)  # nothing on insert
    store["a"]  # touch: now ("b", 1) is the least recently used
    freed, error = store.evict_bytes(1)
    assert (freed, error) == (b.nbytes, None)
    assert ("b", 1) in store.spilled and store.spilled_bytes == b.nbytes and store.disk_bytes > 0
    assert store.memory_bytes == a.nbytes and len(os.listdir(store.directory)) == 1
    # a peer fetch gets the bytes on disk, and the key stays on disk
    p = store.serialized(("b", 1))
    assert np.array_equal(loads(p), b) and ("b", 1) in store.spilled
    # a task reading it brings it back to memory, writable
    got = store[("b", 1)]
    assert np.array_equal(got, b) and got.flags.writeable
    assert ("b", 1) not in store.spilled and store.unspill_count == 1 and not os.listdir(store.directory)


def test_store_deletes_files_with_keys(store):
    for i in range(5):
        put(store, i, np.full(10_000, i), 80_000)
    assert store.evict_bytes(10**9) == (400_000, None)
    assert len(os.listdir(store.directory)) == 5
    for i in range(5):
        del store[i]
    assert not os.listdir(store.directory) and len(store) == 0 and store.disk_bytes == 0


def test_store_keeps_values_in_memory_when_the_disk_is_full(tiny_disk):
    nbytes: dict = {}
    s = SpillStore(str(tiny_disk / "spill"), nbytes)
    values = {i: np.random.default_rng(i).random(100_000) for i in range(4)}  # 800 KB each, 2 MiB disk
    for k, v in values.items():
        nbytes[k] = v.nbytes
        s[k] = v
    freed, error = s.evict_bytes(10**9)
    assert freed == 2 * 800_000 and "No space left on device" in error
    # every value is still there, the ones that did not fit still in memory; no partial file
    assert len(s.spilled) == 2 and len(s.fast) == 2 and len(os.listdir(s.directory)) == 2
    for k, v in values.items():
        assert np.array_equal(s[k], v)
    s.close()
    assert not os.path.exists(s.directory)


def test_unpicklable_value_stays_in_memory(store):
    import threading

    put(store, "lock", threading.Lock(), 100)
    with pytest.raises(TypeError):
        store.evict_bytes(100)
    assert "lock" in store.fast and "lock" not in store.spilled


def test_free_keys_of_spilled_results(tmp_path):
    nbytes: dict = {}
    store = SpillStore(str(tmp_path / "spill"), nbytes)
    s = WorkerState(address="tcp://me:1", nthreads=1, data=store, nbytes=nbytes, memory=LIMITS, validate=True)
    s.handle_stimulus(compute("a"))
    s.handle_stimulus(ExecuteSuccess("s", "a", 1, np.ones(1000), 8000, "ndarray", 0, 1, None))
    store.evict_bytes(8000)
    assert "a" in store.spilled and "a" in s.data
    s.handle_stimulus(FreeKeysEvent("f", ("a",)))
    assert "a" not in s.data and not os.listdir(store.directory)
    store.close()


def test_a_collected_store_touches_no_file(tmp_path):
    """Garbage collection may run inside `sys._current_frames()` (the profiler), where
    file I/O deadlocks CPython: only an explicit close removes the spill directory."""
    import gc

    s = SpillStore(str(tmp_path / "spill"), {})
    s.test_nbytes = s.nbytes
    put(s, "a", np.ones(10), 80)
    s.evict_bytes(80)
    assert os.listdir(s.directory)
    del s
    gc.collect()
    assert os.listdir(tmp_path / "spill")  # still there: nothing ran at collection
