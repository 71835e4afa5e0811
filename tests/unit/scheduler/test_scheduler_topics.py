"""The scheduler's per-topic event log (pure)."""

from __future__ import annotations

from shoal.scheduler.topics import EventLog


def test_log_is_bounded_per_topic_and_delivers_to_subscribers():
    log = EventLog(length=2)
    log.subscribe("c1", ["a"])
    log.subscribe("c2", ["a", "b"])
    assert sorted(log.log("a", 1, 10.0)) == [("c1", "a", (10.0, 1)), ("c2", "a", (10.0, 1))]
    assert log.log(["b", "z"], 2, 11.0) == [("c2", "b", (11.0, 2))]
    log.log("a", 3, 12.0)
    log.log("a", 4, 13.0)
    assert log.get("a") == ((12.0, 3), (13.0, 4))
    assert log.get() == {"a": ((12.0, 3), (13.0, 4)), "b": ((11.0, 2),), "z": ((11.0, 2),)}
    assert log.get("nothing") == ()


def test_unsubscribe_one_topic_or_everything():
    log = EventLog()
    log.subscribe("c1", ["a", "b"])
    log.unsubscribe("c1", ["a"])
    assert log.log("a", 1, 0.0) == []
    assert log.log("b", 1, 0.0) == [("c1", "b", (0.0, 1))]
    log.unsubscribe("c1")
    assert log.log("b", 2, 0.0) == [] and log.subscribers == {}
