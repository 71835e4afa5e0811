"""`Client.dump_cluster_state` and `shoal.cluster_dump.load_cluster_dump`."""

from __future__ import annotations

import sys

import pytest
from task_functions import inc

from shoal import Event, wait
from shoal.cluster_dump import load_cluster_dump


def blocked(name):
    Event(name).wait()


@pytest.mark.parametrize("fmt, suffix", [("msgpack", ".msgpack.gz"), ("yaml", ".yaml")])
def test_dump_and_load(client, tmp_path, poll, fmt, suffix):
    x = client.submit(inc, 1, key=("inc-tuple", 0))
    wait(x)
    ev = f"dump-{fmt}"
    running = client.submit(blocked, ev, pure=False)
    poll(lambda: any(running.key in v for v in client.processing().values()))
    name = str(tmp_path / "dump")
    client.dump_cluster_state(name, format=fmt)
    state = load_cluster_dump(name + suffix)
    Event(ev).set()
    running.result()

    assert set(state) == {"scheduler", "workers", "versions"}
    sched = state["scheduler"]
    workers = sorted(client.nthreads())
    assert sorted(sched["workers"]) == workers and sorted(state["workers"]) == workers
    task = sched["tasks"][str(x.key)]
    assert task["state"] == "memory" and task["key"] == ["inc-tuple", 0]
    assert sched["tasks"][running.key]["state"] == "processing"
    [holder] = task["who_has"]
    assert str(x.key) in state["workers"][holder]["data"]
    where = sched["tasks"][running.key]["processing_on"]
    assert running.key in state["workers"][where]["executing"]
    assert state["workers"][holder]["story"]
    assert sched["story"]
    assert set(state["versions"]) == {"scheduler", "workers"}
    assert state["versions"]["scheduler"]["packages"]["shoal"]


def test_exclude_and_scheduler_side_write(client, tmp_path):
    x = client.submit(inc, 10)
    wait(x)
    name = str(tmp_path / "sched-dump")
    client.dump_cluster_state(name, write_from_scheduler=True, exclude=["story", "who_wants"])
    state = load_cluster_dump(name + ".msgpack.gz")
    assert "story" not in state["scheduler"]
    assert all("story" not in w for w in state["workers"].values())
    assert "who_wants" not in state["scheduler"]["tasks"][x.key]
    assert state["scheduler"]["tasks"][x.key]["state"] == "memory"


def test_bad_format_and_missing_yaml(client, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Unsupported format"):
        client.dump_cluster_state(str(tmp_path / "d"), format="json")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_cluster_dump(str(tmp_path / "d.json"))
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(ImportError, match="PyYAML"):
        client.dump_cluster_state(str(tmp_path / "d"), format="yaml")
