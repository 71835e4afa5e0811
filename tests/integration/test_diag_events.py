"""Events: `log_event`, `get_events`, `subscribe_topic`, and `shoal.print`/`shoal.warn`."""

from __future__ import annotations

import sys
import uuid
import warnings

import pytest

import shoal
from shoal import get_worker


def topic():
    return f"t-{uuid.uuid4().hex[:8]}"


def chatty(x):
    shoal.print("chatty says", x, sep="|")
    shoal.print("to stderr", x, file=sys.stderr)
    return x


def warns(x):
    shoal.warn(f"careful {x}", RuntimeWarning)
    return x


def logs_from_task(name):
    get_worker().log_event(name, {"from": "task"})
    return 1


def test_log_and_get_events(client):
    a, b = topic(), topic()
    client.log_event(a, {"x": 1})
    client.log_event([a, b], [1, "two"])
    events = client.get_events(a)
    assert isinstance(events, tuple) and [e[1] for e in events] == [{"x": 1}, (1, "two")]
    assert all(isinstance(e[0], float) for e in events)
    assert [e[1] for e in client.get_events(b)] == [(1, "two")]
    assert client.get_events(topic()) == ()
    everything = client.get_events()
    assert a in everything and b in everything and "all" in everything


def test_non_msgpack_message_is_refused(client):
    with pytest.raises(TypeError, match="msgpack serializable"):
        client.log_event("x", object())


def test_workers_and_clients_joining_are_logged(client):
    workers = set(client.scheduler_info()["workers"])
    actions = [e[1] for e in client.get_events("all")]
    assert {a["worker"] for a in actions if a["action"] == "add-worker"} >= workers
    assert {"action": "add-client", "client": client.id} in actions
    w = next(iter(workers))
    assert {"action": "add-worker", "worker": w} in [e[1] for e in client.get_events(w)]


def test_events_from_tasks(client, poll):
    name = topic()
    assert client.submit(logs_from_task, name, pure=False).result() == 1
    assert poll(lambda: client.get_events(name))[0][1] == {"from": "task"}


def test_subscribe_replace_and_unsubscribe(client, poll):
    a, b = topic(), topic()
    got_a, got_a2, got_b = [], [], []
    client.subscribe_topic(a, got_a.append)
    client.log_event(a, 1)
    poll(lambda: got_a)
    client.subscribe_topic(a, got_a2.append)  # replaces the first handler
    client.log_event(a, 2)
    poll(lambda: got_a2)
    assert [e[1] for e in got_a] == [1] and [e[1] for e in got_a2] == [2]

    async def handler(event):
        got_b.append(event)

    client.subscribe_topic(b, handler)
    client.unsubscribe_topic(a)
    client.log_event(a, 3)
    client.log_event(b, 4)  # delivered after the event on `a` would have been
    poll(lambda: got_b)
    assert [e[1] for e in got_b] == [4] and [e[1] for e in got_a2] == [2]
    with pytest.raises(ValueError, match="No event handler known for topic"):
        client.unsubscribe_topic(a)
    client.unsubscribe_topic(b)


def test_failing_handler_is_logged_not_fatal(client, poll):
    name = topic()
    got = []

    def bad(event):
        got.append(event)
        raise RuntimeError("handler bug")

    client.subscribe_topic(name, bad)
    client.log_event(name, 1)
    client.log_event(name, 2)
    poll(lambda: len(got) == 2)
    assert client.submit(chatty, 0, pure=False).result() == 0  # the client still works
    client.unsubscribe_topic(name)


def test_print_in_a_task_reaches_the_client(client, capsys, poll):
    client.submit(chatty, 7, pure=False).result()
    seen = {"out": "", "err": ""}

    def both_printed():
        cap = capsys.readouterr()
        seen["out"] += cap.out
        seen["err"] += cap.err
        # in-process workers print here too: once from the worker, once from the client
        return seen["out"].count("chatty says|7\n") == 2 and seen["err"].count("to stderr 7\n") == 2

    poll(both_printed)


def test_print_outside_tasks_is_the_builtin(capsys):
    shoal.print("plain", 1)
    assert capsys.readouterr().out == "plain 1\n"



def bad_file(x):
    shoal.print("x", file=object())


def test_print_to_another_file_fails_in_the_task(client):
    with pytest.raises(TypeError, match="arbitrary file objects"):
        client.submit(bad_file, 1, pure=False).result()


def test_warn_in_a_task_reaches_the_client(client, poll):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        client.submit(warns, 5, pure=False).result()
        poll(lambda: sum("careful 5" in str(w.message) for w in record) == 2)
        assert all(w.category is RuntimeWarning for w in record if "careful 5" in str(w.message))
