"""Task functions of the Client API system tests (executor, data placement, story,
forwarded logging); importable in worker processes like `task_functions`."""

from __future__ import annotations

import logging
import os

from shoal import Event, get_worker


def payload(i, size=100_000):
    return bytes([i % 256]) * size


def inc(x):
    return x + 1


def pid_of(_):
    return os.getpid()


def drop_key(key, dask_worker=None):
    """Lose `key`'s data on this worker behind the scheduler's back."""
    dask_worker.state.data.pop(key, None)
    dask_worker.state.nbytes.pop(key, None)


def log_warning(name, text):
    logging.getLogger(name).warning(text)
    return get_worker().address


def wait_for_event(name):
    Event(name).wait()
    return name
