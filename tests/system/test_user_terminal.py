"""What a user's terminal shows when workers die: scripts run in a fresh interpreter, as a
user runs them, with their stderr captured."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.system

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import numpy as np
    from shoal import Client, KilledWorker

    def big():
        return np.ones(2**30 // 8).sum()  # 1 GiB on a 400 MiB worker

    def die():
        os._exit(3)

    if __name__ == "__main__":
        what, setup = sys.argv[1], sys.argv[2]
        if setup == "basicConfig":
            logging.basicConfig(level=logging.WARNING, format="USER %(levelname)s %(message)s")
        silence = logging.ERROR if setup == "silence" else logging.WARNING
        with Client(n_workers=1, threads_per_worker=1, memory_limit="400MiB", dashboard_address=":0",
                    silence_logs=silence) as c:
            try:
                c.submit(big if what == "memory" else die).result()
            except KilledWorker as e:
                print("KilledWorker:", e)
    """
)


def run(tmp_path, what: str, setup: str, allowed_failures: int) -> subprocess.CompletedProcess:
    script = tmp_path / "user.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, DASK_SHOAL__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures))
    return subprocess.run(
        [sys.executable, str(script), what, setup], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


def test_memory_kill_is_one_line_in_the_client_terminal(tmp_path):
    out = run(tmp_path, "memory", "default", 0)
    assert "KilledWorker:" in out.stdout, out.stderr
    lines = [line for line in out.stderr.splitlines() if "memory budget" in line]
    assert len(lines) == 1, out.stderr
    assert "shoal.nanny - WARNING - Worker tcp://127.0.0.1:" in lines[0]
    assert "exceeded 95% memory budget" in lines[0] and "Restarting" in lines[0]
    assert "SIGKILL" not in out.stderr  # the kill itself is one line, not two


def test_worker_exit_is_reported_once_per_death_in_the_users_own_format(tmp_path):
    out = run(tmp_path, "exit", "basicConfig", 1)
    assert "KilledWorker:" in out.stdout, out.stderr
    lines = [line for line in out.stderr.splitlines() if "exited with code 3" in line]
    assert lines, out.stderr
    assert all(line.startswith("USER WARNING Worker tcp://") for line in lines), out.stderr
    pids = [line.split("pid=")[1].split(")")[0] for line in lines]
    assert len(pids) == len(set(pids)), out.stderr  # each death once, never duplicated


def test_silence_logs_hides_warnings(tmp_path):
    out = run(tmp_path, "memory", "silence", 0)
    assert "KilledWorker:" in out.stdout, out.stderr
    assert "memory budget" not in out.stderr


UNCAUGHT = textwrap.dedent(
    """
    from shoal import Client

    def inner(x):
        raise ValueError(f"bad input {x}")

    def outer(x):
        return inner(x)

    if __name__ == "__main__":
        with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
            c.submit(outer, 1).result()
    """
)


def test_an_uncaught_task_error_shows_the_callers_line_and_the_tasks_frames(tmp_path):
    script = tmp_path / "uncaught.py"
    script.write_text(UNCAUGHT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 1
    tb = out.stderr[out.stderr.index("Traceback") :].splitlines()
    assert tb == [
        "Traceback (most recent call last):",
        f'  File "{script}", line 12, in <module>',
        "    c.submit(outer, 1).result()",
        f'  File "{script}", line 8, in outer',  # the script's functions, by value, get their file back
        "    return inner(x)",
        f'  File "{script}", line 5, in inner',
        '    raise ValueError(f"bad input {x}")',
        "ValueError: bad input 1",
    ], out.stderr


IPYTHON_SESSION = (
    "from shoal import Client\n"
    "def inner(x):\n"
    "    raise ValueError(f'bad input {x}')\n"
    "\n"
    "c = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=':0')\n"
    "f = c.submit(inner, 1)\n"
    "f.result()\n"
    "f.result()\n"
    "c.close()\n"
)


def test_tracebacks_in_an_ipython_shell_are_the_cells_code_and_do_not_grow(tmp_path):
    pytest.importorskip("IPython", reason="IPython is a test dependency")
    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--colors=NoColor", "--simple-prompt", "--no-banner"],
        input=IPYTHON_SESSION, capture_output=True, text=True, timeout=90, cwd=tmp_path,
        env=dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython")),
    )  # fmt: skip
    text = out.stdout + out.stderr
    blocks = text.split("Traceback (most recent call last)")[1:]
    assert len(blocks) == 2, text
    shown = [b.split("ValueError: bad input 1")[0] for b in blocks]
    # the cell's own function with its source; the one re-raise frame hidden (IPython
    # honours __tracebackhide__); nothing of shoal's
    for b in shown:
        assert "Cell In[2], line 2, in inner()" in b and "raise ValueError(f'bad input {x}')" in b, text
        assert "skipping hidden 1 frame" in b and "shoal" not in b.replace("from shoal", ""), text
    # the same length the second time (only the prompt number differs)
    assert [len(b.splitlines()) for b in shown] == [len(shown[0].splitlines())] * 2, text
