"""shoal's lines on the user's terminal: the handler stays quiet once the user configured
logging, `silence_logs` levels, `shoal.logging` (both shapes), nannies' alerts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from shoal import log_terminal


@pytest.fixture
def bare_root(monkeypatch):
    """As in a script that configured no logging (pytest's own handlers aside)."""
    monkeypatch.setattr(log_terminal, "user_configured", lambda: False)


def test_warnings_reach_stderr_when_the_user_configured_nothing(bare_root, capsys):
    logging.getLogger("shoal.nanny").warning("Worker %s exceeded 95%% memory budget", "tcp://w")
    logging.getLogger("shoal.scheduler").info("Register worker")  # below the default level
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "shoal.nanny - WARNING - Worker tcp://w exceeded 95% memory budget" in err


def test_quiet_once_the_root_logger_has_a_handler(capsys):
    assert log_terminal.user_configured()  # pytest's handlers, as a user's basicConfig
    logging.getLogger("shoal.nanny").warning("not twice")
    assert "not twice" not in capsys.readouterr().err


def test_silence_and_restore(bare_root, capsys):
    shoal_logger = logging.getLogger("shoal")
    before = shoal_logger.level
    old = log_terminal.silence(logging.INFO)
    try:
        logging.getLogger("shoal.scheduler").info("Register worker tcp://w")
        assert "Register worker tcp://w" in capsys.readouterr().err
        log_terminal.silence(logging.ERROR)
        logging.getLogger("shoal.nanny").warning("hidden")
        assert "hidden" not in capsys.readouterr().err
    finally:
        log_terminal.restore(old)
    assert shoal_logger.level == before
    assert log_terminal.initialize().level == logging.WARNING


def test_level_names():
    assert log_terminal.level_of("warning") == logging.WARNING
    assert log_terminal.level_of("INFO") == logging.INFO
    assert log_terminal.level_of(15) == 15
    with pytest.raises(ValueError, match="unknown logging level 'loud'"):
        log_terminal.level_of("loud")


def test_remote_nanny_alert_is_one_client_line(caplog):
    event = (0.0, {"worker": "tcp://10.0.0.5:4000", "pid": 77, "reason": "exited with code 3", "nanny_pid": -1})
    with caplog.at_level(logging.WARNING, logger="shoal.client"):
        log_terminal.handle_worker_alert(event)
        # a nanny in this very process has already logged its own line
        log_terminal.handle_worker_alert((0.0, dict(event[1], nanny_pid=os.getpid())))
    lines = [r.getMessage() for r in caplog.records if r.name == "shoal.client"]
    assert lines == ["Worker tcp://10.0.0.5:4000 (pid=77) exited with code 3; its nanny is restarting it"]


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("shoal:\n  logging:\n    shoal.scheduler: info\n", "20"),
        (
            "shoal:\n  logging:\n    version: 1\n    incremental: true\n"
            "    loggers:\n      shoal.scheduler:\n        level: DEBUG\n",
            "10",
        ),
    ],
)
def test_shoal_logging_config_from_yaml(tmp_path, yaml_text, expected):
    (tmp_path / "shoal.yaml").write_text(yaml_text)
    code = textwrap.dedent(
        """
        import logging, shoal
        print(logging.getLogger("shoal.scheduler").level)
        """
    )
    env = dict(os.environ, DASK_CONFIG=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == expected, out.stderr
