"""Which client is the default: distributed's `temp_default_client` and
`ensure_default_client` (`shoal.client.client` keeps the registry)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dask

from shoal.client import client as _client

__all__ = ["temp_default_client", "ensure_default_client"]


@contextlib.contextmanager
def temp_default_client(c: Any) -> Iterator[None]:
    """Make `c` the default client (for `default_client()` and dask's `compute`) inside
    the block, then restore the previous one."""
    index = next(_client._global_client_index)
    _client._global_clients[index] = c
    try:
        with dask.config.set(scheduler=c.get):
            yield
    finally:
        _client._global_clients.pop(index, None)


def ensure_default_client(client: Any) -> None:
    """Make `client` the default client if it is not already."""
    try:
        current = _client.default_client()
    except ValueError:
        current = None
    if current is not client:
        client._register_default()
