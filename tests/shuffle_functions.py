"""Functions the shuffle tests run in tasks (importable by worker processes)."""

from __future__ import annotations

import time


def slow_partition(df, delay=0.05):
    time.sleep(delay)
    return df


def shuffle_state(dask_worker=None):
    """The shuffle service's buffers on this worker (for tests)."""
    from shoal.worker.server import get_worker  # noqa: F401  (run() passes the worker)

    ext = dask_worker.extensions["shuffle"]
    return ext.metrics()
