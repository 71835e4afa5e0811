"""The text progress bar in a real pseudo-terminal of 60 and 80 columns, read back through
a terminal emulator (pyte): every line fits, it is redrawn in place (no stale copies, no
wrapped halves), erred tasks included; and plain lines when the output is no terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap

import pyte
import pytest

pytestmark = pytest.mark.system

SCRIPT = textwrap.dedent(
    """
    import time
    from shoal import Client, progress

    def a_rather_long_task_prefix_name(x):
        time.sleep(0.02)
        return x

    def short(x):
        time.sleep(0.03)
        return x

    def fails(x):
        raise ValueError(x)

    if __name__ == "__main__":
        with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
            futs = c.map(a_rather_long_task_prefix_name, range(30)) + c.map(short, range(20))
            futs.append(c.submit(fails, 1))
            progress(futs, interval="20ms")
            print("END")
    """
)

ROWS = 24


def run_in_pty(tmp_path, columns: int) -> bytes:
    script = tmp_path / "bar.py"
    script.write_text(SCRIPT)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=follower, stdout=follower, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path
    )
    os.close(follower)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                raise AssertionError(f"no output for 60 s: {bytes(out)[-500:]!r}")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        proc.wait(30)
    assert proc.returncode == 0, bytes(out)[-2000:]
    return bytes(out)


@pytest.mark.parametrize("columns", [60, 80])
def test_bar_fits_and_redraws_in_place(tmp_path, columns):
    raw = run_in_pty(tmp_path, columns)
    text = raw.decode()
    # every line drawn is narrower than the terminal (no wrapping, so moving up lands right)
    drawn = [piece.split("\x1b[")[0] for chunk in text.split("\r\x1b[2K") for piece in chunk.split("\n")]
    assert drawn and max(len(p.rstrip("\r")) for p in drawn) < columns
    screen = pyte.Screen(columns, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(raw.replace(b"\n", b"\r\n"))  # the pty's own newline translation is off in pyte
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert shown[-1] == "END"
    bar = shown[:-1]
    # exactly the final bar: a line per prefix and the total, each once
    assert len(bar) == 4, shown
    prefixes, total = bar[:-1], bar[-1]
    assert [p.split()[0] for p in prefixes] == [
        "a_rather_long_task_prefix_name"[: len(prefixes[0].split()[0])], "fails", "short"
    ]  # fmt: skip
    assert "100%" in total and "51/51" in total and ("1 erred" in total or "1 err" in total)
    assert all("100%" in p for p in prefixes)
    assert all(len(line) < columns for line in shown)


def test_plain_lines_when_not_a_terminal(tmp_path):
    script = tmp_path / "bar.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout and "\x1b" not in out.stdout
    lines = out.stdout.splitlines()
    assert lines[-1] == "END"
    assert "| 100% Completed | 51/51 | 1 erred |" in lines[-2]
