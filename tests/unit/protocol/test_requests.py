"""The typed request records match the handlers they guard (issue 18): every argument a
handler takes is declared with a check, and no record declares one it does not take."""

from __future__ import annotations

import inspect

import pytest

from shoal.protocol import requests as r
from shoal.scheduler.server import Scheduler
from shoal.worker.nanny import Nanny
from shoal.worker.server import Worker


def _params(handler):
    params = list(inspect.signature(handler).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None  # forwards **kwargs: checked where it lands
    return {p.name for p in params}


@pytest.mark.parametrize(
    "make, table",
    [(lambda: Scheduler(), r.REQUESTS), (lambda: Worker("inproc://x"), r.WORKER_REQUESTS),
     (lambda: Nanny("tcp://127.0.0.1:1"), r.NANNY_REQUESTS)],
    ids=["scheduler", "worker", "nanny"],
)  # fmt: skip
def test_records_match_the_handlers(make, table):
    server = make()
    for name, handler in server.handlers.items():
        record = table.get(name)
        if record is None:
            continue  # an extension's operation: plain msgpack arguments (check_request)
        params = _params(handler)
        if params is not None:
            assert params == set(record.checks), f"{name}: handler takes {params}, record has {set(record.checks)}"
    missing = [n for n in table if n not in server.handlers]
    assert not missing, f"records without a handler: {missing}"


def test_check_request():
    assert r.check_request("who_has", {"keys": ("a", ("b", 1))}, r.CLIENT) is None
    assert "bad argument 'keys'" in r.check_request("who_has", {"keys": (float("nan"),)}, r.CLIENT)
    assert "takes no argument" in r.check_request("who_has", {"x": 1}, r.CLIENT)
    assert "may not call 'heartbeat'" in r.check_request("heartbeat", {}, r.CLIENT)
    assert "may not call 'restart'" in r.check_request("restart", {}, r.WORKER)
    assert "before saying who it is" in r.check_request("some_extension_op", {}, r.ANONYMOUS)
    assert r.check_request("some_extension_op", {"a": [1, 2]}, r.CLIENT) is None
    assert "bad argument" in r.check_request("some_extension_op", {1: 2}, r.CLIENT)
    assert r.check_request("get_data", {"keys": ("x",)}, None, r.WORKER_REQUESTS) is None


def test_an_extension_declares_its_operations():
    from shoal.protocol.checks import keys

    try:
        r.declare("test_ext_op", [r.CLIENT], keys=keys)
        assert r.check_request("test_ext_op", {"keys": ("a",)}, r.CLIENT) is None
        assert "bad argument 'keys'" in r.check_request("test_ext_op", {"keys": (float("nan"),)}, r.CLIENT)
        assert "may not call" in r.check_request("test_ext_op", {}, r.WORKER)
    finally:
        r.REQUESTS.pop("test_ext_op", None)
