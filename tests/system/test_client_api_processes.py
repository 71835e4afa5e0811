"""The rest of the Client API on real worker processes: executor, replicate/rebalance
(every key still readable), story across a recompute, forwarded logging, call stacks."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os

import pytest
from client_task_functions import (
    drop_key,
    inc,
    log_warning,
    payload,
    pid_of,
    wait_for_event,
)

from shoal import Event, wait

pytestmark = pytest.mark.system


def test_executor_on_processes(client):
    with client.get_executor() as ex:
        futures = [ex.submit(inc, i) for i in range(10)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == list(range(1, 11))
        pids = set(ex.map(pid_of, range(20), chunksize=4, timeout=30))
    assert os.getpid() not in pids
    assert pids <= set(client.run(os.getpid).values())


def test_replicate_and_rebalance_keep_every_key(client):
    a, b = sorted(client.nthreads())
    futures = client.map(payload, range(8), workers=[a], pure=False)
    wait(futures)
    client.replicate(futures[:3])
    who = client.who_has(futures)
    assert all(sorted(who[f.key]) == [a, b] for f in futures[:3])
    client.replicate(futures[:3], n=1)
    assert all(len(client.who_has(futures)[f.key]) == 1 for f in futures)
    client.rebalance(futures)
    who = client.who_has(futures)
    on_b = [k for k, holders in who.items() if holders == [b]]
    assert 3 <= len(on_b) <= 5  # about half moved; nothing duplicated
    assert all(len(h) == 1 for h in who.values())
    # every key still readable, from whichever worker now holds it
    assert client.gather(futures) == [payload(i) for i in range(8)]
    assert sum(client.nbytes(summary=False).get(f.key, 0) for f in futures) == 8 * len(payload(0))


def test_story_across_lost_data_and_recompute(client):
    a, b = sorted(client.nthreads())
    x = client.submit(inc, 1, workers=[a], pure=False)
    wait(x)
    client.run(drop_key, x.key, workers=[a])
    y = client.submit(inc, x, workers=[b], pure=False)
    assert y.result() == 3
    story = client.story(x)
    times = [e[-1] for e in story]
    assert times == sorted(times)
    sources = {e[0] for e in story}
    assert sources == {"scheduler", a, b}
    assert [e[2:4] for e in story if e[0] == "scheduler"].count(("processing", "memory")) == 2
    assert any(e[2:4] == ("flight", "fetch") for e in story if e[0] == b)


def test_forward_logging_from_processes(client, poll):
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("shoal.systest")
    logger.addHandler(handler)
    try:
        client.forward_logging("shoal.systest")
        where = client.submit(log_warning, "shoal.systest", "from a worker process", pure=False).result()
        [record] = poll(lambda: [r for r in records if r.getMessage() == "from a worker process"], timeout=10)
        assert record.worker == where
        assert record.process != os.getpid()
    finally:
        client.unforward_logging("shoal.systest")
        logger.removeHandler(handler)


def test_call_stack_of_a_process(client, poll):
    f = client.submit(wait_for_event, "sys-call-stack", pure=False)
    stacks = poll(lambda: client.call_stack([f]), timeout=10)
    [by_key] = stacks.values()
    assert "wait_for_event" in "".join(by_key[f.key])
    Event("sys-call-stack").set()
    assert f.result() == "sys-call-stack"


def test_dump_cluster_state_of_processes(client, tmp_path):
    from shoal.cluster_dump import load_cluster_dump

    x = client.submit(inc, 41, key=("inc-sys", 1))
    assert x.result() == 42
    client.dump_cluster_state(str(tmp_path / "sys-dump"))
    state = load_cluster_dump(str(tmp_path / "sys-dump.msgpack.gz"))
    [holder] = state["scheduler"]["tasks"][str(x.key)]["who_has"]
    assert state["workers"][holder]["data"][str(x.key)]["type"] == "int"
    assert sorted(state["versions"]["workers"]) == sorted(client.nthreads())
