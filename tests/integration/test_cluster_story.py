"""`Client.story`: the cluster-wide transition log of keys, across a data loss and recompute."""

from __future__ import annotations

import pytest
from task_functions import inc

from shoal import wait


def drop_key(key, dask_worker=None):
    """Lose `key`'s data on this worker behind the scheduler's back."""
    dask_worker.state.data.pop(key, None)
    dask_worker.state.nbytes.pop(key, None)


def test_story_of_a_key_lost_and_recomputed(client):
    a, b = sorted(client.nthreads())
    x = client.submit(inc, 1, workers=[a], pure=False)
    wait(x)
    client.run(drop_key, x.key, workers=[a])
    # y runs on b, cannot fetch x from a: x is recomputed from lineage, then y runs
    y = client.submit(inc, x, workers=[b], pure=False)
    assert y.result() == 3
    assert x.result() == 2

    story = client.story(x)
    assert story and all(len(e) == 7 for e in story)
    times = [e[-1] for e in story]
    assert times == sorted(times)
    assert {e[1] for e in story} == {x.key}
    sched = [(e[2], e[3]) for e in story if e[0] == "scheduler"]
    assert sched.count(("processing", "memory")) == 2  # computed twice
    assert ("memory", "released") in sched  # ... because it was lost in between
    on_a = [(e[2], e[3]) for e in story if e[0] == a]
    assert on_a.count(("executing", "memory")) == 2
    on_b = [e for e in story if e[0] == b]
    assert any(e[2:4] == ("flight", "fetch") and e[4] == a for e in on_b)  # b found nothing on a
    assert any(e[2:4] == ("flight", "memory") for e in on_b)  # and fetched the recomputed x
    # every entry names its stimulus; completions on workers have ids of their own
    assert all(isinstance(e[5], str) and e[5] for e in story)
    done = [e[5] for e in story if e[0] == a and e[3] == "memory"]
    assert len(set(done)) == 2 and all(sid.startswith("execute-") for sid in done)

    # by stimulus id: the entries of one stimulus, from wherever it was logged
    sid = next(e[5] for e in story if e[0] == "scheduler" and e[3] == "memory")
    assert all(e[5] == sid for e in client.story(sid))
    assert client.story("no-such-key") == []
    with pytest.raises(ValueError, match="on_error"):
        client.story(x, on_error="explode")


def test_story_of_a_failed_task(client):
    f = client.submit(int, "x", pure=False)
    wait(f)
    story = client.story(f.key)
    assert ("executing", "error") in [(e[2], e[3]) for e in story if e[0] != "scheduler"]
    assert ("processing", "erred") in [(e[2], e[3]) for e in story if e[0] == "scheduler"]
