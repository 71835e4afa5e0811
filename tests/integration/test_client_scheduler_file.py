"""`Client.write_scheduler_file` and `Client(scheduler_file=...)`: another client finds the
scheduler, and its secret, through the file."""

from __future__ import annotations

import json
import stat

import pytest

from shoal import Client


def test_write_then_connect_through_the_file(client, tmp_path):
    path = tmp_path / "scheduler.json"
    client.write_scheduler_file(str(path))
    assert client.scheduler_file == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["address"] == client.scheduler_info()["address"]
    assert bytes.fromhex(info["shoal-secret"]) == client.security.secret
    with Client(scheduler_file=str(path), set_as_default=False) as other:
        assert other.scheduler_file == str(path)
        assert other.submit(sum, [1, 2]).result() == 3
    with pytest.raises(ValueError, match="Scheduler file already set"):
        client.write_scheduler_file(str(tmp_path / "again.json"))


def test_waiting_for_a_missing_file_times_out(tmp_path):
    with pytest.raises(TimeoutError, match="did not appear"):
        Client(scheduler_file=str(tmp_path / "never.json"), timeout=0.2, set_as_default=False)
