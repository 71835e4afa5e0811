"""Argument handling of the `shoal` command line, without starting anything."""

from __future__ import annotations

import os
import stat

import pytest

from shoal.cli import CLIError, build_parser, is_loopback_host, main, read_secret, refuse_insecure
from shoal.cli.worker import parse_nworkers, parse_resources
from shoal.scheduler_file import read_scheduler_file, remove_scheduler_file, secret_from, write_scheduler_file


def test_resources_in_dask_and_json_syntax():
    assert parse_resources("GPU=2 MEM=10e9") == {"GPU": 2.0, "MEM": 1e10}
    assert parse_resources("GPU=2,FOO=1") == {"GPU": 2.0, "FOO": 1.0}
    assert parse_resources('{"GPU": 1}') == {"GPU": 1.0}
    assert parse_resources(None) is None
    with pytest.raises(CLIError, match="KEY=NUMBER"):
        parse_resources("GPU")
    with pytest.raises(CLIError, match="KEY=NUMBER"):
        parse_resources("GPU=many")


def test_nworkers():
    assert parse_nworkers("3", 8) == (3, None)
    assert parse_nworkers("-1", 8) == (8, None)
    assert parse_nworkers("auto", 4) == (4, 1)
    with pytest.raises(CLIError, match="integer or 'auto'"):
        parse_nworkers("lots", 8)
    with pytest.raises(CLIError, match="no workers"):
        parse_nworkers("-9", 8)


def test_secret_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOAL_SECRET", raising=False)
    assert read_secret(None) is None
    monkeypatch.setenv("SHOAL_SECRET", "abcd")
    assert read_secret(None) == b"\xab\xcd"
    assert "SHOAL_SECRET" not in os.environ  # not inherited by processes started later
    f = tmp_path / "secret"
    f.write_text("0102\n")
    assert read_secret(str(f)) == b"\x01\x02"
    f.write_text("not hex")
    with pytest.raises(CLIError, match="hexadecimal"):
        read_secret(str(f))
    with pytest.raises(CLIError, match="cannot read"):
        read_secret(str(tmp_path / "missing"))


def test_refusal_without_a_secret_on_reachable_addresses():
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost") and is_loopback_host("")
    assert not is_loopback_host("0.0.0.0")
    refuse_insecure("x", "127.0.0.1", None, False)
    refuse_insecure("x", "0.0.0.0", b"s", False)
    refuse_insecure("x", "0.0.0.0", None, True)
    with pytest.raises(CLIError, match="refusing to listen on '10.1.2.3' without a shared secret"):
        refuse_insecure("x", "10.1.2.3", None, False)


def test_flags_users_know_from_dask():
    p = build_parser()
    args = p.parse_args(["worker", "tcp://h:8786", "--nworkers", "2", "--nthreads", "4", "--no-nanny",
                         "--memory-limit", "4GB", "--death-timeout", "10", "--dashboard-address", ":0"])  # fmt: skip
    assert (args.nworkers, args.nthreads, args.nanny) == ("2", 4, False)
    assert (args.memory_limit, args.death_timeout) == ("4GB", 10)
    args = p.parse_args(["scheduler", "--host", "0.0.0.0", "--port", "9000", "--no-dashboard"])
    assert (args.host, args.port, args.dashboard) == ("0.0.0.0", 9000, False)
    with pytest.raises(SystemExit):
        p.parse_args(["worker", "--nprocs", "2"])  # unknown options are errors, not ignored


def test_usage_errors_exit_1_with_one_line(capsys):
    assert main(["worker", "tcp://127.0.0.1:1", "--no-nanny", "--nworkers", "2"]) == 1
    assert "cannot be used with --nworkers > 1" in capsys.readouterr().err
    assert main(["worker"]) == 1
    assert "scheduler's address" in capsys.readouterr().err
    assert main([]) == 2


def test_scheduler_file_round_trip(tmp_path):
    path = tmp_path / "sub" / "scheduler.json"
    write_scheduler_file(str(path), {"address": "tcp://127.0.0.1:1", "id": "S-1"}, b"\x01\x02")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = read_scheduler_file(str(path), timeout=1)
    assert info["address"] == "tcp://127.0.0.1:1" and secret_from(info) == b"\x01\x02"
    assert [p.name for p in path.parent.iterdir()] == ["scheduler.json"]  # no temporary file left
    remove_scheduler_file(str(path), "S-other")  # a newer scheduler's file is left alone
    assert path.exists()
    remove_scheduler_file(str(path), "S-1")
    assert not path.exists()
    with pytest.raises(TimeoutError, match="did not appear"):
        read_scheduler_file(str(path), timeout=0.1)
    path.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_scheduler_file(str(path), timeout=1)
