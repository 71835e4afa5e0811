"""`Client.forward_logging`: records logged inside tasks on workers reach the client."""

from __future__ import annotations

import logging

import pytest

from shoal import get_worker


def log_in_task(name, level, text):
    logging.getLogger(name).log(level, text)
    return get_worker().address


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def forwarded(self, text):
        return [r for r in self.records if r.getMessage() == text and hasattr(r, "worker")]


@pytest.fixture
def collect():
    handler = Collect()
    logger = logging.getLogger("shoal.test.fwd")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_forward_logging_of_one_logger(client, collect, poll):
    client.forward_logging("shoal.test.fwd", level=logging.INFO)
    status = client.forward_logging("shoal.test.fwd", level=logging.INFO)  # idempotent
    assert status == {w: {"status": "OK"} for w in client.nthreads()}
    where = client.submit(log_in_task, "shoal.test.fwd.child", logging.WARNING, "hello from a task", pure=False).result()
    [record] = poll(lambda: collect.forwarded("hello from a task"))
    assert record.worker == where
    assert record.name == "shoal.test.fwd.child" and record.levelno == logging.WARNING
    assert record.funcName == "log_in_task"

    # below the forwarding level: not forwarded
    client.submit(log_in_task, "shoal.test.fwd", logging.DEBUG, "too quiet", pure=False).result()
    client.submit(log_in_task, "shoal.test.fwd", logging.INFO, "marker after", pure=False).result()
    poll(lambda: collect.forwarded("marker after"))
    assert collect.forwarded("too quiet") == []

    client.unforward_logging("shoal.test.fwd")
    client.submit(log_in_task, "shoal.test.fwd", logging.ERROR, "after unforward", pure=False).result()
    client.forward_logging("shoal.test.fwd")
    client.submit(log_in_task, "shoal.test.fwd", logging.ERROR, "forwarded again", pure=False).result()
    poll(lambda: collect.forwarded("forwarded again"))
    assert collect.forwarded("after unforward") == []
    client.unforward_logging("shoal.test.fwd")


def test_other_loggers_are_not_forwarded(client, collect, poll):
    client.forward_logging("shoal.test.other")
    client.submit(log_in_task, "shoal.test.fwd", logging.ERROR, "not subscribed", pure=False).result()
    client.submit(log_in_task, "shoal.test.other", logging.ERROR, "subscribed", pure=False).result()
    other = Collect()
    logging.getLogger("shoal.test.other").addHandler(other)
    try:
        client.submit(log_in_task, "shoal.test.other", logging.ERROR, "subscribed 2", pure=False).result()
        poll(lambda: other.forwarded("subscribed 2"))
    finally:
        logging.getLogger("shoal.test.other").removeHandler(other)
        client.unforward_logging("shoal.test.other")
    assert collect.forwarded("not subscribed") == []
