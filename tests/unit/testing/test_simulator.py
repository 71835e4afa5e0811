"""The pure cluster simulator (`shoal.testing.Simulator`) and the test helpers: whole
computations on a fake clock, both state machines validated after every stimulus."""

from __future__ import annotations

import pytest

from shoal.protocol import messages as m
from shoal.scheduler.state import SchedulerState
from shoal.testing import Simulator, poll
from shoal.testing import builders as b
from shoal.testing.matchers import to_client, to_worker


def test_a_chain_runs_in_order_on_the_fake_clock():
    sim = Simulator(n_workers=2)
    sim.submit({"x": [], "y": ["x"], "z": ["y"]}, durations={"x": 1.0, "y": 2.0, "z": 0.5})
    sim.run()
    assert sim.in_memory() == {"z"}
    assert sim.now == pytest.approx(3.5)
    assert [e[0] for e in sorted(sim.executions, key=lambda e: e[2])] == ["x", "y", "z"]
    # the chain's data stays put: every step runs where its input is
    assert len({w for _, w, _, _ in sim.executions}) == 1


def test_independent_tasks_spread_over_workers_and_threads():
    sim = Simulator(n_workers=2, nthreads=2)
    sim.submit({f"t{i}": [] for i in range(8)}, durations={f"t{i}": 1.0 for i in range(8)})
    sim.run()
    assert sim.in_memory() == {f"t{i}" for i in range(8)}
    assert sim.now == pytest.approx(2.0)  # 8 one-second tasks on 4 threads
    assert {w for _, w, _, _ in sim.executions} == {"sim://w0", "sim://w1"}


def test_a_task_fetches_its_inputs_from_another_worker():
    sim = Simulator(n_workers=2)
    sim.submit(
        {"a": [], "b": [], "c": ["a", "b"]},
        annotations={"a": {"workers": ["sim://w0"]}, "b": {"workers": ["sim://w1"]}},
        nbytes={"a": 100_000_000, "b": 10},
    )
    sim.run()
    assert sim.in_memory() == {"c"}
    # c runs where the big input is; the small one travels
    assert sim.ran_on("c") == ["sim://w0"]
    fetched = [e for e in sim.workers["sim://w0"].story_log if e[0] == "b"]
    assert [e[1:3] for e in fetched][:3] == [("released", "fetch"), ("fetch", "flight"), ("flight", "memory")]


def test_a_lost_worker_is_recovered_from_lineage():
    sim = Simulator(n_workers=2)
    sim.submit({"x": [], "y": ["x"]}, durations={"x": 1.0, "y": 5.0})
    sim.run(until=2.0)  # x done on w0, y running next to it
    [where] = sim.ran_on("x")
    sim.remove_worker(where)
    sim.run()
    assert sim.in_memory() == {"y"}
    assert sim.ran_on("x")[-1] != where  # recomputed elsewhere from lineage


def test_idle_workers_steal_queued_work():
    sim = Simulator(n_workers=1)
    sim.submit({f"t{i}": [] for i in range(20)}, durations={f"t{i}": 1.0 for i in range(20)})
    sim.run(until=0.5)
    sim.add_worker("sim://late")
    sim.run()
    assert sim.in_memory() == {f"t{i}" for i in range(20)}
    assert "sim://late" in {w for _, w, _, _ in sim.executions}
    assert sim.now < 20.0  # the late worker took part of the work


def test_builders_and_matchers_drive_the_scheduler_directly():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    s.handle_stimulus(b.add_worker("tcp://w:1"), b.add_client("c"))
    out = s.handle_stimulus(b.update_graph({"x": []}))
    [compute] = to_worker(out, m.ComputeTask, address="tcp://w:1")
    assert compute.key == "x"
    out = s.handle_stimulus(b.task_finished("tcp://w:1", "x", compute.run_id))
    assert to_client(out, m.KeyInMemory, key="x", client="c")
    assert to_client(out, m.TaskErred) == []


def test_poll_returns_the_value_or_names_the_condition():
    assert poll(lambda: 7) == 7

    def never():
        return False

    with pytest.raises(AssertionError, match="never"):
        poll(never, timeout=0.05)
