"""The dashboard's pure parts: summaries, Prometheus text, pages, addresses, frames."""

from __future__ import annotations

import base64
import hashlib
import re
from types import SimpleNamespace

import pytest

from shoal.dashboard import pages, snapshot
from shoal.dashboard.app import parse_dashboard_address
from shoal.dashboard.httpserver import _WS_GUID, ws_frame
from shoal.utils import key_prefix


def task(key, state):
    return SimpleNamespace(key=key, state=state, prefix=key_prefix(key))


def worker(address, name, processing=0, nbytes=0):
    return SimpleNamespace(
        address=address, name=name, host=address.split("://")[-1].rsplit(":", 1)[0], nthreads=2,
        processing=dict.fromkeys(range(processing)), started=set(range(min(processing, 2))),
        has_what=set(range(3)), nbytes=nbytes, memory_limit=1000, paused=False,
    )  # fmt: skip


def fake_state():
    tasks = [task(f"inc-{i}", "memory") for i in range(3)] + [task("inc-9", "processing"), task("sum-1", "waiting")]
    tasks += [task(("x", 0, 1), "erred"), task('we"ird\nkey\\-1', "queued")]
    return SimpleNamespace(
        tasks={t.key: t for t in tasks},
        workers={"tcp://h:1": worker("tcp://h:1", "a", 3, 10), "tcp://h:2": worker("tcp://h:2", "b")},
        clients={"c1": None},
        transition_counter=42,
    )


def test_summary_counts_per_prefix_and_state():
    s = snapshot.summary(fake_state())
    idx = {st: i for i, st in enumerate(s["states"])}
    assert s["prefixes"]["inc"][idx["memory"]] == 3 and s["prefixes"]["inc"][idx["processing"]] == 1
    assert s["prefixes"]["sum"][idx["waiting"]] == 1 and s["prefixes"]["x"][idx["erred"]] == 1
    assert s["totals"] == {"released": 0, "waiting": 1, "queued": 1, "no-worker": 0, "processing": 1, "memory": 3,
                           "erred": 1}  # fmt: skip
    assert s["n_tasks"] == 7 and s["n_clients"] == 1 and s["transitions"] == 42
    a = s["workers"][0]
    assert (a["address"], a["name"], a["processing"], a["executing"], a["nbytes"]) == ("tcp://h:1", "a", 3, 2, 10)


def test_counts_json_shape():
    c = snapshot.counts_json(snapshot.summary(fake_state()))
    assert c["tasks"] == 7 and c["memory"] == 3 and c["erred"] == 1 and c["workers"] == 2 and c["cores"] == 4
    assert c["bytes"] == 10 and c["idle"] == 1 and c["saturated"] == 1 and c["hosts"] == 1 and c["waiting"] == 2


def test_prometheus_text_escapes_label_values():
    text = snapshot.prometheus(snapshot.summary(fake_state()), "dask")
    assert text.endswith("\n")
    lines = text.splitlines()
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\\n]|\\.)*",?)+\})? -?[0-9.]+$')
    for line in lines:
        assert line.startswith(("# HELP dask_scheduler_", "# TYPE dask_scheduler_")) or sample.match(line), line
    weird = key_prefix('we"ird\nkey\\-1')
    escaped = weird.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    assert f'dask_scheduler_prefix_tasks{{task_prefix_name="{escaped}",state="queued"}} 1' in lines
    assert "dask_scheduler_workers 2" in lines and "dask_scheduler_transitions_total 42" in lines
    assert snapshot.prometheus(snapshot.summary(fake_state()), "myns").startswith("# HELP myns_scheduler_")


def test_compact_stream_turns_list_keys_into_tuples():
    rec = {
        "key": ["x", 0, 1], "worker": "tcp://h:1", "thread": 7, "status": "OK",
        "startstops": [{"action": "transfer", "start": 1.0, "stop": 1.5, "source": "tcp://h:2"},
                       {"action": "compute", "start": 2.0, "stop": 3.0}],
    }  # fmt: skip
    assert snapshot.compact_stream([rec]) == [["tcp://h:1", 7, 2.0, 3.0, "('x', 0, 1)", "x", "OK", [[1.0, 1.5]]]]


def test_pages_escape_everything():
    evil = "<script>alert(1)</script>"
    s = snapshot.summary(fake_state())
    s["workers"][0]["name"] = evil
    s["workers"][0]["address"] = f"tcp://{evil}:1"
    table = pages.workers_table(s["workers"], "./")
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert 'href="./info/worker/tcp%3A%2F%2F%3Cscript%3E' in table
    ts = SimpleNamespace(
        key=evil, state="erred", prefix="p", priority=0, nbytes=-1, type_name=None, processing_on=None,
        who_has=set(), exception_text="ValueError('<b>x</b>')", who_wants=set(), dependencies=(task(evil, "memory"),),
        dependents=set(),
    )  # fmt: skip
    body = pages.task_info(ts, "../../")
    assert "<script>" not in body and "<b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body
    full = pages.page(evil, body, "../../")
    assert "<title>&lt;script&gt;" in full and full.count("<script") == 0


@pytest.mark.parametrize(
    ("path", "root"), [("/status", "./"), ("/info/main/workers.html", "../../"), ("/info/task/a%2Fb.html", "../../")]
)
def test_relative_root(path, root):
    assert pages.root_of(path) == root


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8787", ("10.0.0.1", 8787)), (":0", ("10.0.0.1", 0)), (8790, ("10.0.0.1", 8790)), ("8791", ("10.0.0.1", 8791)),
        ("localhost:9000", ("localhost", 9000)), ("http://127.0.0.2:1", ("127.0.0.2", 1)), ("[::1]:5", ("::1", 5)),
        (None, None), (False, None), ("", None), (True, ("10.0.0.1", 8787)),
    ],
)  # fmt: skip
def test_parse_dashboard_address(address, expected):
    assert parse_dashboard_address(address, "10.0.0.1") == expected


def test_parse_dashboard_address_names_the_bad_value():
    with pytest.raises(ValueError, match="dashboard_address 'host:http'"):
        parse_dashboard_address("host:http", "127.0.0.1")


def test_websocket_frames_and_accept_key():
    # RFC 6455 section 1.3's example
    accept = base64.b64encode(hashlib.sha1(b"dGhlIHNhbXBsZSBub25jZQ==" + _WS_GUID).digest())
    assert accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert ws_frame(b"hi") == b"\x81\x02hi"
    assert ws_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert ws_frame(b"x" * 70000)[:10] == b"\x81\x7f" + (70000).to_bytes(8, "big")
    assert ws_frame(b"", 8) == b"\x88\x00"


class FakeTransport:
    def __init__(self, buffered: int):
        self.buffered = buffered
        self.written: list[bytes] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FakeWriter:
    def __init__(self, transport: FakeTransport):
        self.transport = transport

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1)

    def close(self) -> None:
        self.transport.closing = True


def test_a_viewer_that_does_not_read_is_closed_not_buffered():
    from shoal.dashboard.httpserver import WebSocket

    reading = WebSocket(FakeWriter(FakeTransport(0)), max_buffer=100)
    reading.send_frame(b"frame")
    assert reading.writer.transport.written == [b"frame"] and not reading.closed
    stuck = WebSocket(FakeWriter(FakeTransport(101)), max_buffer=100)
    stuck.send_frame(b"frame")
    assert stuck.closed and stuck.writer.transport.written == [ws_frame(b"", 8)]  # a close frame, no data
    stuck.send_frame(b"more")
    assert stuck.writer.transport.written == [ws_frame(b"", 8)]


def test_worker_memory_is_split_into_managed_unmanaged_and_spilled():
    st = fake_state()
    st.workers["tcp://h:2"].paused = True
    metrics = {"tcp://h:1": {"memory": 900, "managed": 300, "unmanaged": 600, "spilled": 250}}
    s = snapshot.summary(st, metrics)
    a, b = s["workers"]
    assert (a["memory"], a["managed"], a["unmanaged"], a["spilled"]) == (900, 300, 600, 250)
    # no heartbeat yet: what the scheduler knows is managed memory
    assert (b["memory"], b["managed"], b["unmanaged"], b["spilled"], b["paused"]) == (0, 0, 0, 0, True)
    table = pages.workers_table(s["workers"], "./")
    assert "<th>Managed · unmanaged · spilled</th>" in table and "300 B · 600 B · 250 B" in table and "paused" in table
