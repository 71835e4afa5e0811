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


def test_the_number_of_topics_is_bounded_keeping_all_and_subscribed_ones():
    log = EventLog(length=10, max_topics=4)
    log.log("all", "first", 0.0)
    log.subscribe("c1", ["watched"])
    log.log("watched", "w", 1.0)
    for i in range(100):  # registrations that come and go, one topic each
        log.log(["all", f"tcp://10.0.0.{i}:1"], {"action": "add-worker"}, 2.0 + i)
    assert len(log.events) == 4
    assert set(log.events) == {"all", "watched", "tcp://10.0.0.98:1", "tcp://10.0.0.99:1"}
    log.log("tcp://10.0.0.98:1", "again", 200.0)  # written again: now the latest
    log.log("new", "n", 201.0)
    assert set(log.events) == {"all", "watched", "tcp://10.0.0.98:1", "new"}
    assert log.get("all")[-1] == (101.0, {"action": "add-worker"})
    log.forget("new")
    assert "new" not in log.events and log.get("new") == ()


def test_the_events_of_all_topics_together_are_bounded():
    """Many topics each below their own bound (an authenticated peer's log_event to
    ever new topics) still keep at most `max_events` events in all: the oldest event of
    the topic written longest ago goes first."""
    log = EventLog(length=5, max_topics=1000, max_events=12)
    for i in range(40):
        log.log(f"t{i % 8}", {"n": i}, float(i))
    held = log.get()
    assert log.total == sum(len(v) for v in held.values()) == 12
    kept = sorted(e[1]["n"] for v in held.values() for e in v)
    assert kept[-8:] == list(range(32, 40)) and min(kept) >= 40 - 2 * 8  # what goes is old
    log.forget("t7")
    assert log.total == sum(len(v) for v in log.get().values())
    # one topic at its own bound: appends push its oldest out, the count stays right
    one = EventLog(length=3)
    for i in range(10):
        one.log("all", i, float(i))
    assert one.total == 3 and [m for _, m in one.get("all")] == [7, 8, 9]


def test_dict_messages_are_kept_flat_and_read_as_new_dicts():
    """A dict message is held as one flat tuple (a third of the memory of a dict, for the
    joins and leaves that are most of the log); readers get equal, new dicts, so changing
    one cannot change the log. Deliveries carry the message object that was logged."""
    log = EventLog()
    log.subscribe("c1", ["all"])
    msg = {"action": "add-worker", "worker": "tcp://10.0.0.1:1"}
    (delivery,) = log.log(["all", "tcp://10.0.0.1:1"], msg, 5.0)
    assert delivery == ("c1", "all", (5.0, msg)) and delivery[2][1] is msg
    log.log("all", {}, 6.0)
    log.log("all", ("not", "a", "dict"), 7.0)
    kept = log.events["all"][0]
    assert type(kept) is tuple and len(kept) == 5 and kept is log.events["tcp://10.0.0.1:1"][0]
    first = log.get("all")
    assert first == ((5.0, msg), (6.0, {}), (7.0, ("not", "a", "dict")))
    first[0][1]["action"] = "changed by a reader"
    first[1][1]["x"] = 1
    assert log.get("all")[:2] == ((5.0, msg), (6.0, {}))
    assert list(log.get()["all"][0][1]) == ["action", "worker"]  # key order kept
