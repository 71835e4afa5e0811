"""Diagnostics across real worker processes: the task stream and `shoal.print`."""

from __future__ import annotations

import io
import os
import warnings

import pytest
from diag_task_functions import shout, square, total

from shoal import get_task_metadata, get_task_stream, progress

pytestmark = pytest.mark.system


def test_task_stream_from_worker_processes(client):
    workers = sorted(client.scheduler_info()["workers"])
    pids = {w["pid"] for w in client.scheduler_info()["workers"].values()}
    assert os.getpid() not in pids
    with get_task_stream(client) as ts:
        xs = [client.submit(square, i, workers=[workers[i % 2]], pure=False) for i in range(6)]
        t = client.submit(total, *xs, workers=[workers[0]], pure=False)
        assert t.result() == sum(i * i for i in range(6))
    by_key = {r["key"]: r for r in ts.data}
    assert set(by_key) == {f.key for f in [*xs, t]}
    assert {r["worker"] for r in ts.data} == set(workers)
    transfers = [ss for ss in by_key[t.key]["startstops"] if ss["action"] == "transfer"]
    assert transfers and all(ss["source"] == workers[1] for ss in transfers)
    assert by_key[t.key]["startstops"][-1]["action"] == "compute"


def test_print_and_warn_from_worker_processes(client, capsys, poll):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert client.submit(shout, 42, pure=False).result() == 42
        out = ""

        def printed():
            nonlocal out
            out += capsys.readouterr().out
            return "remote hello 42\n" in out

        poll(printed)
        poll(lambda: any("remote warning 42" in str(w.message) for w in record))
    assert out.count("remote hello 42") == 1  # the worker's own stdout is another process's


def test_progress_and_metadata_with_worker_processes(client):
    out = io.StringIO()
    with get_task_metadata() as tasks:
        fs = client.map(square, range(10))
        progress(fs, file=out)
    assert "100% Completed | 10/10" in out.getvalue()
    assert set(tasks.state) == {f.key for f in fs} and set(tasks.state.values()) == {"memory"}
