"""Pure data-placement plans (`placement.plan_replicate` / `plan_rebalance`) and the
state machine's `DropReplicas` event: no loop, no sockets."""

from __future__ import annotations

import itertools
import random

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddWorker, ClientMsg, DropReplicas, WorkerMsg
from shoal.scheduler.instructions import ToWorker
from shoal.scheduler.placement import plan_rebalance, plan_replicate, priority_parts, priority_rank
from shoal.scheduler.state import SchedulerState

W1, W2, W3 = "tcp://w1:1", "tcp://w2:1", "tcp://w3:1"
_sid = itertools.count()


def sid() -> str:
    return f"p{next(_sid)}"


# ---------------------------------------------------------------------------- plan_replicate


def test_replicate_to_all_least_loaded_first():
    copies, drops = plan_replicate({"a": {W1}, "b": {W1, W2}}, {"a": 10, "b": 5}, {W1: 15, W2: 5, W3: 0}, None)
    assert sorted(copies) == [("a", W2), ("a", W3), ("b", W3)]
    assert drops == []


def test_replicate_n_picks_least_loaded_and_drops_surplus():
    copies, drops = plan_replicate({"a": {W1}}, {"a": 10}, {W1: 10, W2: 100, W3: 0}, 2)
    assert copies == [("a", W3)]
    copies, drops = plan_replicate({"a": {W1, W2, W3}}, {"a": 10}, {W1: 10, W2: 100, W3: 50}, 1)
    assert copies == []
    assert sorted(drops) == [("a", W2), ("a", W3)]  # the two fullest holders give theirs up


def test_replicate_counts_only_target_workers():
    # a copy outside the target set neither counts nor is dropped
    copies, drops = plan_replicate({"a": {W1}}, {"a": 1}, {W2: 0, W3: 0}, 1)
    assert len(copies) == 1 and copies[0][1] in (W2, W3) and drops == []


def test_replicate_n_larger_than_cluster_and_bad_n():
    copies, _ = plan_replicate({"a": {W1}}, {"a": 1}, {W1: 0, W2: 0}, 10)
    assert copies == [("a", W2)]
    with pytest.raises(ValueError, match="at least 1"):
        plan_replicate({"a": {W1}}, {"a": 1}, {W1: 0}, 0)
    assert plan_replicate({"a": {W1}}, {"a": 1}, {}, 2) == ([], [])


# ---------------------------------------------------------------------------- plan_rebalance


def test_rebalance_evens_out_two_workers():
    holders = {f"k{i}": {W1} for i in range(10)}
    nbytes = dict.fromkeys(holders, 100)
    moves = plan_rebalance(holders, nbytes, {W1: 1000, W2: 0})
    assert len(moves) == 5
    assert all(s == W1 and r == W2 for _, s, r in moves)


def test_rebalance_never_moves_to_a_holder_or_twice():
    holders = {"a": {W1, W2}, "b": {W1}, "c": {W1}}
    nbytes = {"a": 100, "b": 100, "c": 100}
    moves = plan_rebalance(holders, nbytes, {W1: 300, W2: 100, W3: 0})
    keys = [k for k, _, _ in moves]
    assert len(keys) == len(set(keys))
    for key, sender, recipient in moves:
        assert sender in holders[key] and recipient not in holders[key]


def test_rebalance_balanced_or_unmovable_does_nothing():
    assert plan_rebalance({"a": {W1}}, {"a": 100}, {W1: 100, W2: 0}) == []  # would overshoot
    assert plan_rebalance({"a": {W1}, "b": {W2}}, {"a": 5, "b": 5}, {W1: 5, W2: 5}) == []
    assert plan_rebalance({"a": {W1}}, {"a": 0}, {W1: 0, W2: 0}) == []
    assert plan_rebalance({}, {}, {}) == []


def test_rebalance_only_moves_given_keys_but_counts_all_memory():
    # W1 holds 1000 bytes of other data: only "a" may move, and it does
    moves = plan_rebalance({"a": {W1}}, {"a": 100}, {W1: 1000, W2: 0})
    assert moves == [("a", W1, W2)]


def test_rebalance_reduces_spread_randomized():
    rng = random.Random(42)
    workers = [f"tcp://w{i}:1" for i in range(5)]
    for _ in range(20):
        holders, nbytes = {}, {}
        memory = dict.fromkeys(workers, 0)
        for i in range(rng.randint(0, 60)):
            k = f"k{i}"
            owner = rng.choice(workers[:2])
            holders[k], nbytes[k] = {owner}, rng.randint(1, 1000)
            memory[owner] += nbytes[k]
        moves = plan_rebalance(holders, nbytes, memory)
        after = dict(memory)
        for key, sender, recipient in moves:
            after[sender] -= nbytes[key]
            after[recipient] += nbytes[key]
        spread = max(memory.values()) - min(memory.values())
        new_spread = max(after.values()) - min(after.values())
        assert new_spread <= spread
        assert sum(after.values()) == sum(memory.values())


# ---------------------------------------------------------------------------- DropReplicas


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True)
    for addr in (W1, W2):
        s.handle_stimulus(AddWorker(sid(), m.RegisterWorker(addr, addr, 1, 0, {}, 1, "/tmp", {}, None)))
    yield s
    s.validate_state()


def put(s, key, workers, nbytes=8):
    s.handle_stimulus(
        ClientMsg(sid(), "c", m.UpdateData({key: list(workers)}, {key: nbytes}, {key: "int"}))
    )


def frees(out, worker):
    return [k for i in out if isinstance(i, ToWorker) and i.address == worker and isinstance(i.msg, m.FreeKeys)
            for k in i.msg.keys]  # fmt: skip


def test_drop_replica_frees_it_on_that_worker(state):
    put(state, "x", [W1, W2], nbytes=8)
    out = state.handle_stimulus(DropReplicas(sid(), [("x", W1)]))
    assert {w.address for w in state.tasks["x"].who_has} == {W2}
    assert frees(out, W1) == ["x"]
    assert state.workers[W1].nbytes == 0 and state.workers[W2].nbytes == 8


def test_drop_never_removes_the_last_copy(state):
    put(state, "x", [W1])
    out = state.handle_stimulus(DropReplicas(sid(), [("x", W1), ("nope", W1), ("x", "tcp://gone:1")]))
    assert {w.address for w in state.tasks["x"].who_has} == {W1}
    assert frees(out, W1) == []
    put(state, "y", [W1, W2])
    state.handle_stimulus(DropReplicas(sid(), [("y", W1), ("y", W2)]))
    assert len(state.tasks["y"].who_has) == 1


def test_drop_keeps_copy_a_processing_task_reads(state):
    put(state, "x", [W1, W2])
    wire = (("y", -1, dumps(((), {})), ("x",), (0, 0), {"workers": [W1]}),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("y",))))
    assert state.tasks["y"].processing_on.address == W1
    state.handle_stimulus(DropReplicas(sid(), [("x", W1)]))
    assert {w.address for w in state.tasks["x"].who_has} == {W1, W2}
    ts = state.tasks["y"]
    state.handle_stimulus(WorkerMsg(sid(), W1, m.TaskFinished("y", ts.run_id, 8, "int", 0.0, 0.1, None)))
    state.handle_stimulus(DropReplicas(sid(), [("x", W1)]))
    assert {w.address for w in state.tasks["x"].who_has} == {W2}


def test_rebalance_many_keys_stays_cheap_and_even():
    workers = [f"tcp://w{i}:1" for i in range(8)]
    holders = {f"k{i}": {workers[i % 2]} for i in range(40_000)}
    nbytes = {k: 1000 + (i % 7) for i, k in enumerate(holders)}
    memory = dict.fromkeys(workers, 0)
    for k, (w,) in holders.items():
        memory[w] += nbytes[k]
    moves = plan_rebalance(holders, nbytes, memory)
    after = dict(memory)
    for key, sender, recipient in moves:
        after[sender] -= nbytes[key]
        after[recipient] += nbytes[key]
    assert max(after.values()) - min(after.values()) <= 2 * max(nbytes.values())


def test_priority_rank_orders_exactly_like_the_priority_tuple():
    rng = random.Random(7)
    prios = [(-rng.choice([0, 0, 1, 10, -3, 2**20]), rng.randrange(5), rng.randrange(1_000_000)) for _ in range(3000)]
    prios += [(-p, c) for p in (0, 1, -2) for c in range(4)]  # submit's 2-tuples
    prios += [(-2.5, 1, 0), (-2.25, 1, 0), (-2, 1, 0), (-3, 1, 0), (0.5, 0, 0)]  # float user priorities
    by_tuple = sorted(prios, key=lambda p: (p + (0, 0))[:3])
    assert sorted(prios, key=priority_rank) == by_tuple
    for p in prios:
        assert priority_parts(priority_rank(p)) == (p + (0, 0))[:3]


def test_priority_rank_clamps_out_of_range_counters():
    assert priority_rank((0, -5, 2**50)) == priority_rank((0, 0, 2**40 - 1))
    assert priority_rank(()) == 0
