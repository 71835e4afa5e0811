"""Task functions of the tests of futures and collections passed as arguments;
importable in worker processes like `task_functions`."""

from __future__ import annotations

import collections

from shoal import get_client

Point = collections.namedtuple("Point", "x y")


def inc(x):
    return x + 1


def identity(x):
    return x


def total_of_array(a):
    """`a` is a persisted dask array (its graph holds futures): compute it from the task."""
    return int(a.sum().compute())


def total_via_client(a):
    return int(get_client().compute(a.sum()).result())


def describe(x):
    return type(x).__name__, x
