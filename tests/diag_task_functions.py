"""Task functions for the diagnostics system tests (importable in worker processes)."""

from __future__ import annotations

import shoal


def square(x):
    return x * x


def total(*xs):
    return sum(xs)


def shout(x):
    shoal.print("remote hello", x)
    shoal.warn(f"remote warning {x}")
    return x
