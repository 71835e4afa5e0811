"""The shuffle service's bookkeeping, driven purely: the book of runs and owners, the
scheduler events it relies on (`SetRestrictions`, `Recompute`), the receive buffer."""

from __future__ import annotations

import itertools

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, Recompute, RemoveWorker, SetRestrictions, WorkerMsg
from shoal.scheduler.instructions import ToWorker
from shoal.scheduler.state import SchedulerState
from shoal.shuffle.book import ShuffleBook, ShuffleSpec, assign_owners
from shoal.shuffle.buffer import ShardBuffer
from shoal.shuffle.scheduler import spec_from_wire, spec_to_wire

_sid = itertools.count()


def sid() -> str:
    return f"s{next(_sid)}"


def spec(n_in=3, parts=(0, 1, 2, 3), sid_="sh1") -> ShuffleSpec:
    return ShuffleSpec(
        id=sid_,
        parts=tuple(parts),
        output_keys=tuple((f"out-{sid_}", i) for i in range(len(parts))),
        transfer_keys=tuple((f"transfer-{sid_}", i) for i in range(n_in)),
        barrier_key=f"barrier-{sid_}",
    )


# ---------------------------------------------------------------------------- the book


def test_owners_balanced_and_stable():
    owners = assign_owners(tuple(range(10)), ["w2", "w1", "w3"])
    counts = {w: list(owners.values()).count(w) for w in ("w1", "w2", "w3")}
    assert sorted(counts.values()) == [3, 3, 4]
    assert owners == assign_owners(tuple(range(10)), ["w3", "w1", "w2"])  # order does not matter
    assert [owners[p] for p in range(10)] == sorted(owners.values())  # each worker's partitions are neighbours
    with pytest.raises(ValueError, match="at least one worker"):
        assign_owners((0,), [])


def test_get_or_create_is_idempotent_and_runs_are_distinct():
    book = ShuffleBook()
    run, created = book.get_or_create(spec(), ["w1", "w2"])
    assert created and run.run_id == 1 and set(run.owners.values()) == {"w1", "w2"}
    again, created = book.get_or_create(spec(), ["w1", "w2", "w3"])
    assert again is run and not created  # owners are stable for the run's life
    other, _ = book.get_or_create(spec(sid_="sh2"), ["w1"])
    assert other.run_id == 2 and set(other.owners.values()) == {"w1"}
    book.validate()
    assert book.finish("sh1") is run and "sh1" not in book.runs and run.spec.barrier_key not in book.barriers
    assert book.finish("sh1") is None
    book.validate()


def test_losing_an_owner_restarts_the_run():
    book = ShuffleBook()
    run, _ = book.get_or_create(spec(), ["w1", "w2"])
    assert book.remove_worker("w9") == []  # not a participant: nothing to do
    [restart] = book.remove_worker("w2", active_outputs={("out-sh1", 1)})
    assert restart.run is run
    assert restart.recompute == (*run.spec.transfer_keys, run.spec.barrier_key, ("out-sh1", 1))
    assert book.runs == {} and book.barriers == {}
    new, created = book.get_or_create(spec(), ["w1"])
    assert created and new.run_id > run.run_id and set(new.owners.values()) == {"w1"}
    book.validate()


def test_filtered_output_partitions():
    s = spec(parts=(5, 7))
    run, _ = ShuffleBook().get_or_create(s, ["w1", "w2"])
    assert set(run.owners) == {5, 7}
    assert s.output_key(7) == ("out-sh1", 1)


def test_spec_wire_round_trip():
    s = spec()
    wire = spec_to_wire(s)
    # msgpack turns tuples into lists: keys come back as tuples
    listed = {k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, list) else v for k, v in wire.items()}
    assert spec_from_wire(listed) == s
    with pytest.raises(TypeError):
        spec_from_wire({"parts": []})


# ---------------------------------------------------------------------------- scheduler events

SPEC = dumps(((), {}))


def add_worker(s, addr):
    s.handle_stimulus(AddWorker(sid(), m.RegisterWorker(addr, addr, 1, 0, {}, 1, "/tmp", {}, None)))


def graph(s, tasks, wanted):
    wire = tuple((k, -1, SPEC, tuple(deps), (0, i), None) for i, (k, deps) in enumerate(tasks.items()))
    return s.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), tuple(wanted))))


def finish(s, key, nbytes=8):
    ts = s.tasks[key]
    worker = ts.processing_on.address
    return s.handle_stimulus(WorkerMsg(sid(), worker, m.TaskFinished(key, ts.run_id, nbytes, "int", 0.0, 0.001, None)))


def computes(out):
    return {(i.msg.key, i.address) for i in out if isinstance(i, ToWorker) and isinstance(i.msg, m.ComputeTask)}


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True, unknown_task_duration=0.5)
    s.handle_stimulus(AddClient(sid(), "c"))
    add_worker(s, "tcp://a:1")
    add_worker(s, "tcp://b:1")
    yield s
    s.validate_state()


SHUFFLE = {"in0": [], "in1": [], "t0": ["in0"], "t1": ["in1"], "bar": ["t0", "t1"], "o0": ["bar"], "o1": ["bar"]}


def run_to_barrier(s):
    graph(s, SHUFFLE, ["o0", "o1"])
    for k in ("in0", "in1", "t0", "t1"):
        finish(s, k)


def test_set_restrictions_pins_outputs(state):
    graph(state, SHUFFLE, ["o0", "o1"])
    state.handle_stimulus(SetRestrictions(sid(), {"o0": ("tcp://b:1",), "o1": ("tcp://a:1",), "unknown": ("x",)}))
    for k in ("in0", "in1", "t0", "t1"):
        finish(state, k)
    out = finish(state, "bar")
    assert computes(out) == {("o0", "tcp://b:1"), ("o1", "tcp://a:1")}
    # lifting a pin of a task pinned to a worker that is gone makes it runnable again
    state.handle_stimulus(SetRestrictions(sid(), {"o0": None}))
    assert state.tasks["o0"].restrictions is None


def test_set_restrictions_rescues_a_task_with_no_worker(state):
    graph(state, {"x": []}, [])
    state.handle_stimulus(SetRestrictions(sid(), {"x": ("tcp://gone:1",)}))
    graph(state, {}, ["x"])
    assert state.tasks["x"].state == "no-worker"
    out = state.handle_stimulus(SetRestrictions(sid(), {"x": ("tcp://a:1",)}))
    assert computes(out) == {("x", "tcp://a:1")}


def test_recompute_starts_the_shuffle_over(state):
    run_to_barrier(state)
    finish(state, "bar")
    assert state.tasks["o0"].state == "processing"
    finish(state, "o0")
    # an owner left: transfers and barrier again, the running output too
    out = state.handle_stimulus(Recompute(sid(), ("t0", "t1", "bar", "o1"), "owner left"))
    for k in ("t0", "t1", "bar"):
        assert state.tasks[k].state in ("waiting", "queued", "processing"), k
    assert state.tasks["o0"].state == "memory"  # a finished output stays
    assert state.tasks["o1"].state == "waiting"
    frees = [i.msg for i in out if isinstance(i.msg, m.FreeKeys)]
    assert frees  # the old results are dropped on the workers
    # inputs (released once transferred) are computed again from lineage
    assert {state.tasks[k].state for k in ("in0", "in1")} <= {"waiting", "queued", "processing", "memory"}
    for k in ("in0", "in1", "t0", "t1", "bar", "o1"):
        if state.tasks[k].state != "memory":
            finish(state, k)
    assert state.tasks["o1"].state == "memory"


def test_recompute_of_a_running_transfer_ignores_its_old_result(state):
    graph(state, SHUFFLE, ["o0", "o1"])
    finish(state, "in0")
    ts = state.tasks["t0"]
    assert ts.state == "processing"
    old_run, worker = ts.run_id, ts.processing_on.address
    state.handle_stimulus(Recompute(sid(), ("t0", "bar")))
    # the attempt that was running reports late: ignored
    state.handle_stimulus(WorkerMsg(sid(), worker, m.TaskFinished("t0", old_run, 8, "int", 0.0, 0.001, None)))
    ts = state.tasks["t0"]
    assert ts.state == "processing" and ts.run_id != old_run


def test_recompute_ignores_unknown_and_scattered(state):
    state.handle_stimulus(Recompute(sid(), ("nope",)))
    run_to_barrier(state)
    state.handle_stimulus(RemoveWorker(sid(), "tcp://b:1", "gone"))
    state.handle_stimulus(Recompute(sid(), ("t0", "t1", "bar")))


# ---------------------------------------------------------------------------- the buffer


def piece(v):
    return dumps(list(range(v, v + 1000)))


def test_buffer_dedupes_orders_and_spills(tmp_path):
    buf = ShardBuffer(str(tmp_path / "b"))
    held = buf.add(2, {0: piece(20)})
    assert held == piece(20).nbytes
    buf.add(0, {0: piece(0), 1: piece(1)})
    buf.add(0, {0: piece(999)})  # the same input again (a transfer run twice): dropped
    assert buf.duplicates == 1
    for i in range(3, 10):
        held = buf.add(i, {1: piece(i)})
    assert held == buf.memory_bytes > 10_000
    moved = buf.spill(5_000)
    assert moved > 0 and buf.memory_bytes <= 5_000 and buf.disk_bytes > 0
    got0 = [loads(p)[0] for _, p in buf.take(0)]
    assert got0 == [0, 20]  # input order
    got1 = [loads(p)[0] for _, p in buf.take(1)]
    assert got1 == [1, *range(3, 10)]
    assert buf.memory_bytes == 0 and len(buf.files) == 0
    with pytest.raises(RuntimeError, match="assembled already"):
        buf.take(0)
    buf.add(11, {0: piece(11)})  # late piece of an assembled partition: dropped
    assert buf.duplicates == 2
    buf.close()
    assert not (tmp_path / "b").exists()


def test_buffer_concurrent_spills_lose_nothing(tmp_path):
    import threading

    for attempt in range(5):
        buf = ShardBuffer(str(tmp_path / f"c{attempt}"))
        for i in range(40):
            buf.add(i, {i % 4: piece(i)})
        threads = [threading.Thread(target=buf.spill, args=(0,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert buf.memory_bytes == 0
        for part in range(4):
            assert [loads(p)[0] for _, p in buf.take(part)] == list(range(part, 40, 4))
        buf.close()
