"""Which client is the default: the registry behind `default_client()` and
`Client.current()`, and distributed's `temp_default_client` and `ensure_default_client`."""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import weakref
from collections.abc import Iterator
from typing import Any

import dask

__all__ = ["default_client", "temp_default_client", "ensure_default_client"]

#: clients registered as default, by registration order (the newest open one wins)
_global_clients: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_global_client_index = itertools.count()
#: the client of `Client.as_current()` / `with client:` in this context
_current_client: contextvars.ContextVar[Any] = contextvars.ContextVar("shoal_client", default=None)

_NO_CLIENT_MSG = (
    "No clients found\n"
    "Start a client and point it to the scheduler address\n"
    "  from distributed import Client\n"
    "  client = Client('ip-addr-of-scheduler:8786')\n"
)


def default_client(c: Any = None) -> Any:
    """`c` if given, else the most recently created client that is still open."""
    if c is not None:
        return c
    for i in sorted(_global_clients, reverse=True):
        client = _global_clients.get(i)
        if client is not None and client.status not in ("closing", "closed"):
            return client
    raise ValueError(_NO_CLIENT_MSG)


def add_default(c: Any) -> int:
    """Register `c` as the newest default client; its registration index."""
    index = next(_global_client_index)
    _global_clients[index] = c
    return index


def remove_default(c: Any) -> None:
    """`c` is no default client any more (however often it was registered)."""
    for i, other in list(_global_clients.items()):
        if other is c:
            del _global_clients[i]


def registered_clients() -> list:
    """Every client registered as default and still alive."""
    return list(_global_clients.values())


@contextlib.contextmanager
def temp_default_client(c: Any) -> Iterator[None]:
    """Make `c` the default client (for `default_client()` and dask's `compute`) inside
    the block, then restore the previous one."""
    index = add_default(c)
    try:
        with dask.config.set(scheduler=c.get):
            yield
    finally:
        _global_clients.pop(index, None)


def ensure_default_client(client: Any) -> None:
    """Make `client` the default client if it is not already."""
    try:
        current = default_client()
    except ValueError:
        current = None
    if current is not client:
        client._register_default()
