"""The scheduler state machine, driven with events alone: no loop, no sockets."""

from __future__ import annotations

import itertools

import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, RemoveClient, RemoveWorker, WorkerMsg
from shoal.scheduler.instructions import ToClient, ToWorker
from shoal.scheduler.state import SchedulerState

SPEC = dumps(((), {}))
_sid = itertools.count()


def sid() -> str:
    return f"s{next(_sid)}"


@pytest.fixture
def state():
    s = SchedulerState(clock=lambda: 0.0, validate=True, unknown_task_duration=0.5)
    yield s
    s.validate_state()


def add_worker(s, addr="tcp://w1:1", nthreads=1, resources=None, name=None):
    msg = m.RegisterWorker(addr, name or addr, nthreads, 0, resources or {}, 1, "/tmp", {}, None)
    return s.handle_stimulus(AddWorker(sid(), msg))


def graph(s, client, tasks, wanted):
    """tasks: {key: [deps]}"""
    wire = tuple((k, -1, SPEC, tuple(deps), (0, i), None) for i, (k, deps) in enumerate(tasks.items()))
    return s.handle_stimulus(ClientMsg(sid(), client, m.UpdateGraph(wire, (), tuple(wanted))))


def finish(s, worker, key, nbytes=8):
    ts = s.tasks[key]
    return s.handle_stimulus(WorkerMsg(sid(), worker, m.TaskFinished(key, ts.run_id, nbytes, "int", 0.0, 0.001, None)))


def computes(instructions, worker=None):
    return [i.msg.key for i in instructions if isinstance(i, ToWorker) and isinstance(i.msg, m.ComputeTask)
            and (worker is None or i.address == worker)]


def client_msgs(instructions, cls):
    return [i.msg for i in instructions if isinstance(i, ToClient) and isinstance(i.msg, cls)]


def test_chain_runs_in_dependency_order(state):
    add_worker(state)
    out = graph(state, "c", {"x": [], "y": ["x"], "z": ["y"]}, ["z"])
    assert computes(out) == ["x"]
    assert state.tasks["z"].state == "waiting"
    out = finish(state, "tcp://w1:1", "x")
    assert computes(out) == ["y"]
    out = finish(state, "tcp://w1:1", "y")
    assert computes(out) == ["z"]
    # x is no longer needed once y is done: it is released (data freed on the worker)
    assert "x" not in state.tasks or state.tasks["x"].state == "released"
    out = finish(state, "tcp://w1:1", "z")
    [msg] = client_msgs(out, m.KeyInMemory)
    assert msg.key == "z" and msg.workers == ("tcp://w1:1",)


def test_release_forgets_everything(state):
    add_worker(state)
    graph(state, "c", {"x": [], "y": ["x"]}, ["y"])
    finish(state, "tcp://w1:1", "x")
    finish(state, "tcp://w1:1", "y")
    out = state.handle_stimulus(ClientMsg(sid(), "c", m.ReleaseKeys(("y",))))
    assert state.tasks == {}
    frees = [i.msg for i in out if isinstance(i.msg, m.FreeKeys)]
    assert frees and "y" in frees[0].keys


def test_tasks_wait_for_a_worker_and_are_sent_ahead_boundedly(state):
    graph(state, "c", {f"t{i}": [] for i in range(20)}, [f"t{i}" for i in range(20)])
    assert all(ts.state == "queued" for ts in state.tasks.values())
    out = add_worker(state, nthreads=2)
    sent = computes(out)
    # unknown durations: one running plus one queued per thread
    assert len(sent) == 4
    assert sent == ["t0", "t1", "t2", "t3"]  # priority order


def test_fast_tasks_deepen_the_worker_queue(state):
    add_worker(state)
    graph(state, "c", {f"t{i}": [] for i in range(200)}, [f"t{i}" for i in range(200)])
    before = sum(1 for ts in state.tasks.values() if ts.state == "processing")
    finish(state, "tcp://w1:1", "t0")  # took 1 ms: queue much deeper
    after = sum(1 for ts in state.tasks.values() if ts.state == "processing")
    assert after > before + 1


def test_error_propagates_to_dependents_and_clients(state):
    add_worker(state)
    graph(state, "c", {"x": [], "y": ["x"], "z": []}, ["y", "z"])
    ts = state.tasks["x"]
    exc = dumps(ZeroDivisionError("boom"))
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", ts.run_id, exc, [], "ZeroDivisionError: boom", 0.0, 0.0)))
    erred = client_msgs(out, m.TaskErred)
    assert [e.key for e in erred] == ["y"]
    assert state.tasks["y"].state == "erred"
    assert state.tasks["z"].state == "processing"  # unaffected


def test_retries_rerun_the_task(state):
    add_worker(state)
    wire = (("x", -1, SPEC, (), (0,), {"retries": 1}),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    exc = dumps(ValueError())
    run1 = state.tasks["x"].run_id
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", run1, exc, [], "", 0, 0)))
    assert computes(out) == ["x"] and state.tasks["x"].run_id == run1 + 1
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", run1 + 1, exc, [], "", 0, 0)))
    assert [e.key for e in client_msgs(out, m.TaskErred)] == ["x"]


def test_stale_completion_is_ignored(state):
    add_worker(state)
    graph(state, "c", {"x": []}, ["x"])
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFinished("x", 999, 8, "int", 0, 0, None)))
    assert state.tasks["x"].state == "processing"
    assert not client_msgs(out, m.KeyInMemory)


def test_worker_loss_recomputes_from_lineage(state):
    add_worker(state, "tcp://a:1")
    graph(state, "c", {"x": [], "y": ["x"]}, ["x", "y"])
    finish(state, "tcp://a:1", "x")
    add_worker(state, "tcp://b:1")
    out = state.handle_stimulus(RemoveWorker(sid(), "tcp://a:1", "test"))
    assert [msg.key for msg in client_msgs(out, m.LostData)] == ["x"]
    assert computes(out, "tcp://b:1") == ["x"]
    assert state.tasks["y"].state == "waiting"
    finish(state, "tcp://b:1", "x")
    assert state.tasks["y"].state == "processing"


def test_cancel_cancels_dependents_for_every_client(state):
    add_worker(state)
    graph(state, "a", {"x": [], "y": ["x"]}, ["x"])
    graph(state, "b", {"y": ["x"]}, ["y"])
    out = state.handle_stimulus(ClientMsg(sid(), "a", m.CancelKeys(("x",), False, "user", None)))
    cancelled = {i.client_id: i.msg.keys for i in out if isinstance(i, ToClient) and isinstance(i.msg, m.CancelledKeys)}
    assert set(cancelled) == {"a", "b"}
    assert state.tasks == {}


def test_missing_dependency_cancels_the_task(state):
    add_worker(state)
    out = graph(state, "c", {"y": ["nope"]}, ["y"])
    [msg] = client_msgs(out, m.CancelledKeys)
    assert msg.keys == ("y",) and msg.reason == "lost dependencies"
    assert "y" not in state.tasks


def test_restrictions_and_no_worker(state):
    add_worker(state, "tcp://a:1")
    wire = (("x", -1, SPEC, (), (0,), {"workers": ["tcp://b:1"]}),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    assert state.tasks["x"].state == "no-worker"
    out = add_worker(state, "tcp://b:1")
    assert computes(out, "tcp://b:1") == ["x"]


def test_resources_gate_placement(state):
    add_worker(state, "tcp://a:1")
    add_worker(state, "tcp://g:1", resources={"GPU": 1})
    wire = (("x", -1, SPEC, (), (0,), {"resources": {"GPU": 1}}),)
    out = state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    assert computes(out, "tcp://g:1") == ["x"]


def test_placement_prefers_data_locality(state):
    add_worker(state, "tcp://a:1")
    add_worker(state, "tcp://b:1")
    graph(state, "c", {"big": []}, ["big"])
    holder = state.tasks["big"].processing_on.address
    finish(state, holder, "big", nbytes=10**9)
    out = graph(state, "c", {"use": ["big"]}, ["use"])
    assert computes(out, holder) == ["use"]


def test_fire_and_forget_pseudo_client_lets_go_when_done(state):
    add_worker(state)
    graph(state, "c", {"x": []}, ["x"])
    state.handle_stimulus(ClientMsg(sid(), "c", m.DesireKeys(("x",), "fire-and-forget")))
    state.handle_stimulus(ClientMsg(sid(), "c", m.ReleaseKeys(("x",))))
    assert state.tasks["x"].state == "processing"  # still wanted by the pseudo client
    finish(state, "tcp://w1:1", "x")
    assert "x" not in state.tasks


def test_client_disconnect_releases_its_keys_only(state):
    add_worker(state)
    state.handle_stimulus(AddClient(sid(), "a"), AddClient(sid(), "b"))
    graph(state, "a", {"x": []}, ["x"])
    graph(state, "b", {"x": []}, ["x"])
    state.handle_stimulus(RemoveClient(sid(), "a"))
    assert state.tasks["x"].state == "processing"
    state.handle_stimulus(RemoveClient(sid(), "b"))
    assert "x" not in state.tasks


def test_scattered_data_and_its_loss(state):
    add_worker(state, "tcp://a:1")
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateData({"d": ("tcp://a:1",)}, {"d": 8}, {"d": "int"})))
    assert state.tasks["d"].state == "memory"
    out = state.handle_stimulus(RemoveWorker(sid(), "tcp://a:1", "test"))
    [msg] = client_msgs(out, m.CancelledKeys)
    assert msg.keys == ("d",) and "lost" in msg.msg


def test_retry_reruns_erred_chain(state):
    add_worker(state)
    graph(state, "c", {"x": [], "y": ["x"]}, ["y"])
    exc = dumps(ValueError())
    state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", state.tasks["x"].run_id, exc, [], "", 0, 0)))
    assert state.tasks["y"].state == "erred"
    out = state.handle_stimulus(ClientMsg(sid(), "c", m.RetryKeys(("y",))))
    assert computes(out) == ["x"]
    assert [msg.key for msg in client_msgs(out, m.TaskRetried)] == ["y"]


def test_large_graph_stays_consistent():
    s = SchedulerState(clock=lambda: 0.0)
    add_worker(s, nthreads=4)
    n = 2000
    tasks = {f"leaf-{i}": [] for i in range(n)}
    tasks.update({f"sum-{i}": [f"leaf-{2*i}", f"leaf-{2*i+1}"] for i in range(n // 2)})
    out = graph(s, "c", tasks, [f"sum-{i}" for i in range(n // 2)])
    pending = computes(out)
    done = 0
    while pending:
        key = pending.pop(0)
        pending += computes(finish(s, "tcp://w1:1", key))
        done += 1
    s.validate_state()
    assert done == n + n // 2
    assert all(ts.state == "memory" for k, ts in s.tasks.items() if k.startswith("sum"))
    assert not any(k.startswith("leaf") and ts.state == "memory" for k, ts in s.tasks.items())


def test_retry_on_the_same_worker_is_not_freed_after_resend(state):
    add_worker(state)
    wire = (("x", -1, SPEC, (), (0,), {"retries": 1}),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", state.tasks["x"].run_id, dumps(ValueError()), [], "", 0, 0)))
    kinds = [type(i.msg).__name__ for i in out if isinstance(i, ToWorker)]
    frees = [i.msg.keys for i in out if isinstance(i, ToWorker) and isinstance(i.msg, m.FreeKeys)]
    assert "ComputeTask" in kinds
    assert all("x" not in keys for keys in frees)  # a free after the resend would drop it


def test_erred_dependent_keeps_its_error_after_the_culprit_is_forgotten(state):
    add_worker(state)
    graph(state, "c", {"x": [], "y": ["x"]}, ["y"])
    exc = dumps(ZeroDivisionError("boom"))
    state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.TaskFailed("x", state.tasks["x"].run_id, exc, [], "boom", 0, 0)))
    assert state.tasks["x"].state in ("released", "erred")
    # a second client asks for y, and a new task depends on it: both see x's error
    out = graph(state, "d", {"z": ["y"]}, ["y", "z"])
    erred = {msg.key: msg for msg in client_msgs(out, m.TaskErred)}
    assert set(erred) == {"y", "z"} and erred["z"].text == "boom"


def steal_requests(instructions):
    return [(i.address, i.msg.key) for i in instructions if isinstance(i, ToWorker) and isinstance(i.msg, m.StealRequest)]


def test_idle_worker_steals_queued_work_once_released(state):
    add_worker(state, "tcp://a:1")
    graph(state, "c", {"t0": [], "t1": []}, ["t0", "t1"])
    assert len(state.workers["tcp://a:1"].processing) == 2  # one running, one waiting there
    out = add_worker(state, "tcp://b:1")
    assert steal_requests(out) == [("tcp://a:1", "t1")]  # the newest, lowest priority one
    run = state.tasks["t1"].run_id
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://a:1", m.StealResponse("t1", run, True)))
    assert computes(out, "tcp://b:1") == ["t1"]
    assert state.tasks["t1"].processing_on.address == "tcp://b:1"


def test_steal_refused_when_already_running(state):
    add_worker(state, "tcp://a:1")
    graph(state, "c", {"t0": [], "t1": []}, ["t0", "t1"])
    add_worker(state, "tcp://b:1")
    run = state.tasks["t1"].run_id
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://a:1", m.StealResponse("t1", run, False)))
    assert not computes(out)
    assert state.tasks["t1"].processing_on.address == "tcp://a:1"
    # t1 is running there: never asked for again; the other surplus task is asked for instead
    assert steal_requests(out) == [("tcp://a:1", "t0")]
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://a:1", m.StealResponse("t0", state.tasks["t0"].run_id, False)))
    assert steal_requests(out) == [] and not state.stealing
    out = finish(state, "tcp://a:1", "t1")  # it ran there: fine, exactly once
    assert [msg.key for msg in client_msgs(out, m.KeyInMemory)] == ["t1"]


def test_no_steal_of_task_restricted_to_its_worker(state):
    add_worker(state, "tcp://a:1")
    wire = tuple((f"t{i}", -1, SPEC, (), (0, i), {"workers": ["tcp://a:1"]}) for i in range(2))
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("t0", "t1"))))
    out = add_worker(state, "tcp://b:1")
    assert steal_requests(out) == []


def test_user_priority_first_then_graph_order(state):
    wire = (
        ("low-0", -1, SPEC, (), (0, 1, 0), None),
        ("low-1", -1, SPEC, (), (0, 1, 1), None),
        ("high", -1, SPEC, (), (-10, 2, 5), None),  # priority=10, submitted later
    )
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("low-0", "low-1", "high"))))
    out = add_worker(state)  # capacity 2 with unknown durations
    assert computes(out) == ["high", "low-0"]


def test_loose_restrictions_fall_back_when_named_worker_is_missing(state):
    add_worker(state, "tcp://a:1")
    wire = (("x", -1, SPEC, (), (0,), {"workers": ["tcp://gone:1"], "allow_other_workers": True}),)
    out = state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    assert computes(out, "tcp://a:1") == ["x"]


def test_loose_restrictions_prefer_the_named_worker(state):
    add_worker(state, "tcp://a:1")
    add_worker(state, "tcp://b:1", name="bob")
    wire = (("x", -1, SPEC, (), (0,), {"workers": ["bob"], "allow_other_workers": True}),)
    out = state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("x",))))
    assert computes(out, "tcp://b:1") == ["x"]


def test_long_running_task_does_not_take_a_slot(state):
    add_worker(state)  # one thread: capacity 2 with unknown durations
    graph(state, "c", {"p": [], "q": []}, ["p", "q"])
    graph(state, "c", {"r": []}, ["r"])
    assert state.tasks["r"].state == "queued"
    out = state.handle_stimulus(WorkerMsg(sid(), "tcp://w1:1", m.LongRunning("p", state.tasks["p"].run_id)))
    assert computes(out) == ["r"]  # p seceded: its slot is free for r
    finish(state, "tcp://w1:1", "p")
    assert state.tasks["p"].state == "memory"


# ---------------------------------------------------------------------- KilledWorker


def started(s, worker, *keys):
    run_ids = tuple(s.tasks[k].run_id for k in keys)
    return s.handle_stimulus(WorkerMsg(sid(), worker, m.TaskStarted(tuple(keys), run_ids)))


def test_only_executing_tasks_are_blamed_for_a_dead_worker():
    s = SchedulerState(clock=lambda: 0.0, validate=True, allowed_failures=0)
    add_worker(s, "tcp://a:1")
    s.handle_stimulus(AddClient(sid(), "c"))
    out = graph(s, "c", {"crash": [], "queued": []}, ["crash", "queued"])
    assert sorted(computes(out, "tcp://a:1")) == ["crash", "queued"]  # one runs, one waits behind it
    started(s, "tcp://a:1", "crash")
    add_worker(s, "tcp://b:1")
    out = s.handle_stimulus(RemoveWorker(sid(), "tcp://a:1", "died"))
    assert s.tasks["crash"].state == "erred"
    [err] = client_msgs(out, m.TaskErred)
    assert err.key == "crash"
    assert "Attempted to run task 'crash' on 1 different workers" in err.text
    assert "tcp://a:1" in err.text
    from shoal.exceptions import KilledWorker
    from shoal.protocol.serialize import loads

    exc = loads(err.exception)
    assert isinstance(exc, KilledWorker) and exc.task == "crash" and exc.last_worker == "tcp://a:1"
    # the task that was only queued there is not suspected: it simply runs elsewhere
    assert s.tasks["queued"].state == "processing"
    assert s.tasks["queued"].processing_on.address == "tcp://b:1"
    assert "queued" not in s.suspicious


def test_killed_worker_after_exactly_allowed_failures_plus_one_deaths():
    s = SchedulerState(clock=lambda: 0.0, validate=True, allowed_failures=2)
    s.handle_stimulus(AddClient(sid(), "c"))
    for i in range(4):
        add_worker(s, f"tcp://w{i}:1")
    graph(s, "c", {"crash": []}, ["crash"])
    for i in range(3):
        ts = s.tasks["crash"]
        assert ts.state == "processing", i
        worker = ts.processing_on.address
        started(s, worker, "crash")
        s.handle_stimulus(RemoveWorker(sid(), worker, "died"))
        assert s.suspicious["crash"] == i + 1
    assert s.tasks["crash"].state == "erred"  # after the third death, not before
    assert len(s.workers) == 1
    s.handle_stimulus(ClientMsg(sid(), "c", m.ReleaseKeys(("crash",))))
    assert s.suspicious == {}  # forgotten with its task


def test_task_started_from_a_stale_run_is_ignored():
    s = SchedulerState(clock=lambda: 0.0, validate=True, allowed_failures=0)
    s.handle_stimulus(AddClient(sid(), "c"))
    add_worker(s, "tcp://a:1")
    graph(s, "c", {"x": []}, ["x"])
    old_run = s.tasks["x"].run_id
    s.handle_stimulus(WorkerMsg(sid(), "tcp://a:1", m.TaskStarted(("x",), (old_run + 100,))))
    s.handle_stimulus(WorkerMsg(sid(), "tcp://a:1", m.TaskStarted(("unknown",), (1,))))
    assert not s.workers["tcp://a:1"].started
    s.handle_stimulus(RemoveWorker(sid(), "tcp://a:1", "died"))
    assert s.tasks["x"].state in ("queued", "no-worker")


def finish_timed(s, worker, key, nbytes, duration):
    ts = s.tasks[key]
    msg = m.TaskFinished(key, ts.run_id, nbytes, "int", 10.0, 10.0 + duration, None)
    return s.handle_stimulus(WorkerMsg(sid(), worker, msg))


def test_task_with_big_input_queues_behind_its_holder_rather_than_copying_it():
    state = SchedulerState(clock=lambda: 0.0, validate=True, queue_max_per_thread=1)  # 2 tasks per thread
    add_worker(state, "tcp://a:1")
    graph(state, "c", {"big": []}, ["big"])
    finish(state, "tcp://a:1", "big", nbytes=10**9)  # 5 s to copy at the assumed bandwidth
    graph(state, "c", {"f0": [], "f1": [], "use": ["big"]}, ["f0", "f1", "use"])
    assert len(state.workers["tcp://a:1"].processing) == 2  # a is full: f0, f1
    out = add_worker(state, "tcp://b:1", nthreads=4)  # b has free slots, but not the data
    assert computes(out, "tcp://a:1") == ["use"]  # queued behind f0, f1 where the data is
    out = finish(state, "tcp://a:1", "f0")
    assert steal_requests(out) == []  # b is idle, but copying 1 GB costs more than waiting
    state.validate_state()


def test_quick_task_on_big_data_is_not_stolen(state):
    add_worker(state, "tcp://a:1")
    graph(state, "c", {"big": []}, ["big"])
    finish_timed(state, "tcp://a:1", "big", 10**8, 2.0)  # slow tasks so far: a long wait on a
    graph(state, "c", {"use-9": ["big"]}, ["use-9"])
    finish_timed(state, "tcp://a:1", "use-9", 8, 0.001)  # "use" tasks take a millisecond
    graph(state, "c", {"use-0": ["big"], "use-1": ["big"]}, ["use-0", "use-1"])
    assert len(state.workers["tcp://a:1"].processing) == 2
    out = add_worker(state, "tcp://b:1")
    # copying 100 MB (0.5 s) beats waiting behind a's queue, but not running a 1 ms task
    assert steal_requests(out) == []


def _busy_holder_of_big_data(n_busy_elsewhere, nbytes=10**7):
    """Workers a and b (one thread each); `big` (10 MB: 0.1 s to copy) lives on a, `use-*`
    tasks are known to take a millisecond, a has two 0.5 s tasks queued and b has
    `n_busy_elsewhere`."""
    state = SchedulerState(clock=lambda: 0.0, validate=True, unknown_task_duration=0.5)
    add_worker(state, "tcp://a:1")
    add_worker(state, "tcp://b:1")
    wire = (("big", -1, SPEC, (), (0, 0), {"workers": ["tcp://a:1"]}),)
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), ("big",))))
    finish_timed(state, "tcp://a:1", "big", nbytes, 0.5)
    graph(state, "c", {"use-9": ["big"]}, ["use-9"])
    finish_timed(state, state.tasks["use-9"].processing_on.address, "use-9", 8, 0.001)
    pinned = [(f"slow-{i}", "tcp://a:1") for i in range(2)] + [(f"other-{i}", "tcp://b:1") for i in range(n_busy_elsewhere)]
    wire = tuple((k, -1, SPEC, (), (0, 1 + i), {"workers": [w]}) for i, (k, w) in enumerate(pinned))
    state.handle_stimulus(ClientMsg(sid(), "c", m.UpdateGraph(wire, (), tuple(k for k, _ in pinned))))
    assert state.workers["tcp://a:1"].occupied == 2 and state.workers["tcp://b:1"].occupied == n_busy_elsewhere
    return state


def test_quick_task_on_big_data_waits_for_its_busy_holder_rather_than_busy_worker():
    state = _busy_holder_of_big_data(n_busy_elsewhere=1)
    # waiting behind a's two slow tasks takes longer than copying to b and waiting behind
    # one, but b is busy too: copying 10 MB for a millisecond of work only burns CPU
    out = graph(state, "c", {"use-0": ["big"]}, ["use-0"])
    assert computes(out, "tcp://a:1") == ["use-0"]
    state.validate_state()


def test_quick_task_on_smaller_data_moves_when_the_holders_queue_is_far_longer():
    state = _busy_holder_of_big_data(n_busy_elsewhere=1, nbytes=10**6)
    # copying 1 MB (10 ms, counted 8 times as b is busy) beats waiting behind a task more
    out = graph(state, "c", {"use-0": ["big"]}, ["use-0"])
    assert computes(out, "tcp://b:1") == ["use-0"]
    state.validate_state()


def test_quick_task_on_big_data_goes_to_an_idle_worker_when_that_is_sooner():
    state = _busy_holder_of_big_data(n_busy_elsewhere=0)
    out = graph(state, "c", {"use-0": ["big"]}, ["use-0"])
    assert computes(out, "tcp://b:1") == ["use-0"]  # b would idle: the copy is worth it
    state.validate_state()


def test_slow_task_on_big_data_may_move_to_a_busy_worker():
    state = _busy_holder_of_big_data(n_busy_elsewhere=1)
    out = graph(state, "c", {"crunch-0": ["big"]}, ["crunch-0"])  # unknown prefix: 0.5 s of work
    assert computes(out, "tcp://b:1") == ["crunch-0"]
    state.validate_state()


def test_task_keys_share_their_parts(state):
    from shoal.protocol import framing

    keys = [("layer-abc123", 300 + i, 1000) for i in range(3)] + [("layer-abc123", (7, 300), True)]
    wire = tuple((k, -1, SPEC, (), (0, i), None) for i, k in enumerate(keys))
    packet = framing.encode_packet([m.UpdateGraph(wire, (), ()).to_wire()])
    [decoded] = framing.decode_packet(packet[1:])  # every part decoded on its own, as off the wire
    state.handle_stimulus(ClientMsg(sid(), "c", m.from_wire(decoded)))
    stored = [ts.key for ts in state.tasks.values()]
    assert sorted(map(repr, stored)) == sorted(map(repr, keys))  # same keys, same types
    names = {id(k[0]) for k in stored}
    thousands = {id(k[2]) for k in stored[:3]}
    assert len(names) == 1 and len(thousands) == 1
    assert stored[3][2] is True and stored[3][1][1] is stored[0][1]  # nested parts too


def test_worker_without_threads_is_never_given_tasks(state):
    add_worker(state, "tcp://a:1")
    add_worker(state, "tcp://z:1", nthreads=0)
    graph(state, "c", {"x": []}, ["x"])
    finish(state, "tcp://a:1", "x", nbytes=10**9)
    out = graph(state, "c", {"y": ["x"], "w": []}, ["y", "w"])
    assert computes(out, "tcp://z:1") == [] and sorted(computes(out, "tcp://a:1")) == ["w", "y"]
