"""Published datasets, the client side: named objects shared between clients through
the scheduler.

`publish_dataset`, `unpublish_dataset`, `list_datasets`, `get_dataset` (the async cores
below, wrapped by `Client`) and the `Datasets` mapping (`client.datasets`). The
scheduler side is `shoal.scheduler.datasets`.

Futures pickle to their key alone and come back unbound; `get_dataset` binds every
future it finds in the object (containers and dask collections, see `futures_of`) to
the calling client, which the scheduler made want those keys before it replied.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from dask.typing import no_default

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.sync.state import normalize_name

__all__ = ["Datasets"]


# ====================================================================== client side


def _items(args: tuple, name: Any, kwargs: dict) -> list[tuple[Any, Any]]:
    """The ``(name, object)`` pairs of the three `publish_dataset` call forms."""
    items: list[tuple[Any, Any]] = []
    if name is not None:
        if not args:
            raise ValueError("publish_dataset(..., name=...) needs the object to publish, e.g. publish_dataset(df, name='x')")
        items.append((name, args[0] if len(args) == 1 else args))
    elif args:
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ValueError(
                "publish_dataset without name= expects one dict of {name: object} or keyword "
                "arguments, e.g. publish_dataset({'x': df}) or publish_dataset(x=df)"
            )
        items.extend(args[0].items())
    items.extend(kwargs.items())
    if not items:
        raise ValueError("publish_dataset: nothing to publish")
    return items


async def publish(client: Any, args: tuple, name: Any, override: bool, kwargs: dict) -> None:
    from shoal.client.helpers import futures_of

    items = _items(args, name, kwargs)
    payload = []
    for n, obj in items:
        keys = list(dict.fromkeys(f.key for f in futures_of(obj)))
        payload.append([n, dumps(obj), keys])
    if client.scheduler_comm is None:
        raise RuntimeError(f"{client} is not connected to a scheduler")
    client.outbox.flush()  # submits/persists queued before this call reach the scheduler first
    reply = await client.scheduler_comm.request("publish_put", items=payload, override=bool(override))
    if reply:
        raise KeyError(f"Dataset {normalize_name(reply['exists'])} already exists")


def _name_list(name: Any) -> tuple[list, bool]:
    if isinstance(name, list):
        return list(name), True
    return [name], False


async def unpublish(client: Any, name: Any) -> None:
    names, _ = _name_list(name)
    if client.scheduler_comm is None:
        raise RuntimeError(f"{client} is not connected to a scheduler")
    await client.scheduler_comm.request("publish_delete", names=names)


async def list_names(client: Any) -> tuple:
    if client.scheduler_comm is None:
        raise RuntimeError(f"{client} is not connected to a scheduler")
    return tuple(normalize_name(n) for n in await client.scheduler_comm.request("publish_list"))


async def get(client: Any, name: Any, default: Any = no_default) -> Any:
    from shoal.client.helpers import futures_of

    names, many = _name_list(name)
    if client.scheduler_comm is None:
        raise RuntimeError(f"{client} is not connected to a scheduler")
    replies = await client.scheduler_comm.request("publish_get", names=names, strict=default is no_default)
    if default is no_default:
        for n, reply in zip(names, replies):
            if reply is None:
                raise KeyError(f"Dataset '{n}' not found")
    out = []
    wanted: list = []
    for reply in replies:
        if reply is None:
            out.append(default)
            continue
        obj = client.families.load(reply["data"])
        for fut in futures_of(obj):
            if fut.client is None:
                fut.bind_client(client)
        out.append(obj)
        wanted.extend(normalize_name(k) for k in reply["keys"])
    if wanted:
        # the scheduler made this client want the keys before replying (its status
        # messages arrived before any future existed here): ask again for the status
        client.outbox.send(m.DesireKeys(tuple(dict.fromkeys(wanted)), client.id))
    return out if many else out[0]


class Datasets(MutableMapping):
    """``client.datasets``: the published datasets as a mapping.

    ``datasets[name]`` is `get_dataset` (an awaitable with an asynchronous client);
    assignment, deletion, `len` and iteration block, so with an asynchronous client they
    raise `TypeError` (use the client methods, and ``async for`` to iterate).
    """

    __slots__ = ("_client",)

    def __init__(self, client: Any):
        self._client = client

    def _refuse_async(self, what: str, instead: str) -> None:
        if self._client.asynchronous:
            raise TypeError(f"{what} is not available with an asynchronous client; use {instead} instead")

    def __getitem__(self, name: Any) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: Any, value: Any) -> None:
        self._refuse_async("'client.datasets[name] = value'", "'await client.publish_dataset(value, name=name)'")
        self._client.publish_dataset(value, name=name)

    def __delitem__(self, name: Any) -> None:
        self._refuse_async("'del client.datasets[name]'", "'await client.unpublish_dataset(name)'")
        names = self._client.list_datasets()
        if normalize_name(name) not in names:
            raise KeyError(name)
        self._client.unpublish_dataset(name)

    def __contains__(self, name: Any) -> bool:
        self._refuse_async("'name in client.datasets'", "'name in await client.list_datasets()'")
        try:
            return normalize_name(name) in self._client.list_datasets()
        except TypeError:
            return False

    def __iter__(self):
        self._refuse_async("iterating over client.datasets", "'async for name in client.datasets'")
        return iter(self._client.list_datasets())

    def __aiter__(self):
        if not self._client.asynchronous:
            raise TypeError("'async for' over client.datasets needs an asynchronous client; use 'for' instead")

        async def names():
            for n in await self._client.list_datasets():
                yield n

        return names()

    def __len__(self) -> int:
        self._refuse_async("'len(client.datasets)'", "'len(await client.list_datasets())'")
        return len(self._client.list_datasets())

    def __repr__(self) -> str:
        return f"<Datasets of {self._client!r}>"
