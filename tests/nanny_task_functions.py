"""Task functions for the nanny and command-line tests (importable by worker processes)."""

from __future__ import annotations

import os
import time


def hog_once(marker: str, nbytes: int) -> int:
    """The first run (no `marker` file yet) holds `nbytes` of fresh memory until it is
    killed; a rerun after the restart returns the pid of its worker at once."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        hog = bytearray(nbytes)
        for i in range(0, nbytes, 4096):  # touch every page so it counts in RSS
            hog[i] = 1
        while True:
            time.sleep(0.05)
    return os.getpid()


def sleep_forever(marker: str) -> None:
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(0.05)


def getpid(_: object = None) -> int:
    return os.getpid()


def inc(x: int) -> int:
    return x + 1
