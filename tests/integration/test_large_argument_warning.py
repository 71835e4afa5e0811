"""A submission that embeds a lot of data warns, as distributed does (issue 17, item 13):
"consider scatter". The threshold is `shoal.admin.large-graph-warning-threshold`."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
from task_functions import inc

BIG = np.ones(50_000)  # 400 kB pickled, above the threshold set below

CALLS = {
    "submit": lambda c: c.submit(np.sum, BIG),
    "map": lambda c: c.map(np.sum, [BIG, BIG + 1]),
    "compute": lambda c: c.compute(dask.delayed(np.sum)(BIG)),
    "persist": lambda c: c.persist(dask.delayed(np.sum)(BIG)),
    "get": lambda c: c.get({"s": (np.sum, BIG)}, "s", sync=False),
}


@pytest.fixture
def low_threshold():
    with dask.config.set({"shoal.admin.large-graph-warning-threshold": "100kB"}):
        yield


@pytest.mark.parametrize("name", sorted(CALLS))
def test_large_embedded_data_warns_at_the_call(client, low_threshold, name):
    with pytest.warns(UserWarning, match=r"(?s)Sending large graph of size .*client.scatter") as record:
        CALLS[name](client)
    if name in ("submit", "map", "compute"):
        assert record[0].filename == __file__  # points at the user's line


def test_small_or_scattered_data_does_not_warn(client, low_threshold):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.submit(inc, 1).result() == 2
        [big] = client.scatter([BIG])
        assert client.submit(np.sum, big).result() == BIG.sum()
        assert client.compute(dask.delayed(np.sum)(big)).result() == BIG.sum()


def test_threshold_zero_turns_the_warning_off(client):
    with dask.config.set({"shoal.admin.large-graph-warning-threshold": 0}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert client.submit(np.sum, BIG).result() == BIG.sum()
