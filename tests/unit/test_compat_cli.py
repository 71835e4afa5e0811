"""`python -m shoal.compat`'s command line (the mode itself: tests/system/test_compat_mode.py)."""

from __future__ import annotations

from shoal.compat.__main__ import main


def test_usage(capsys):
    assert main([]) == 2
    assert "usage: python -m shoal.compat SCRIPT.py" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "-m MODULE" in capsys.readouterr().out
    assert main(["-m"]) == 2
