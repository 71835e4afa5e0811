"""The worker's data movement: `Fetch` instructions (many keys from one peer in one
request), `get_data` served to peers and clients (a spilled value as its bytes on disk,
never unpickled here), `update_data` (scatter), and `acquire_replicas` (copies the
scheduler asks for, for replicate / rebalance, in batches of at most
`shoal.worker.transfer.message-bytes-limit`). A mixin of `shoal.worker.server.Worker`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from shoal.protocol.serialize import dumps, loads
from shoal.rpc import Peer
from shoal.worker.memory import SpillStore
from shoal.worker.sizeof import sizeof
from shoal.worker.state import Fetch, FetchDone, UpdateDataEvent

logger = logging.getLogger("shoal.worker")


class Transfers:
    """The data-movement side of `Worker` (see the module docstring)."""

    async def _fetch(self, inst: Fetch) -> None:
        assert self.pool is not None
        sid = f"gather-{next(self._sid)}"
        start = time.time()
        try:
            peer = await self.pool.get(inst.worker)
            reply = await peer.request("get_data", keys=list(inst.keys))
            data = {k: loads(v) for k, v in reply["data"].items()}
            event = FetchDone(
                sid, inst.worker, inst.keys, data, dict(reply["nbytes"]), start=start, stop=time.time()
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.info("could not fetch %d keys from %s: %s", len(inst.keys), inst.worker, e)
            self.pool.forget(inst.worker)
            event = FetchDone(sid, inst.worker, inst.keys, {}, {}, failed=True)
        if self.status == "running":
            self._handle([event])

    async def _get_data(self, peer: Peer, keys: Any) -> dict:
        store = self.store
        nbytes = self.state.nbytes  # type: ignore[union-attr]
        out = {}
        sizes = {}
        on_disk = []
        spills = isinstance(store, SpillStore)
        for k in keys:
            if spills and k in store.spilled:
                on_disk.append(k)
            elif k in store:
                out[k] = dumps(store[k])
                sizes[k] = nbytes.get(k, 0)
        if on_disk:  # sent as the bytes on disk, read off the event loop, never unpickled here
            read = await asyncio.to_thread(read_serialized, store, on_disk)
            for k, p in read.items():
                out[k] = p
                sizes[k] = nbytes.get(k, 0)
        return {"data": out, "nbytes": sizes}

    async def _update_data(self, peer: Peer, data: dict) -> dict:
        values = {k: loads(v) for k, v in data.items()}
        nbytes = {k: sizeof(v) for k, v in values.items()}
        self._handle([UpdateDataEvent(f"update-data-{next(self._sid)}", values, nbytes)])
        return {"nbytes": nbytes}

    async def _acquire_replicas(self, peer: Peer, who_has: dict, nbytes: dict | None = None) -> dict:
        """Fetch copies of keys (key -> holder addresses) from their holders, trying each
        holder in turn; keep them and report them to the scheduler. `nbytes` (key ->
        size, as the scheduler knows it) splits the keys into requests of at most
        `shoal.worker.transfer.message-bytes-limit`, each stored as it arrives, so that
        neither worker holds the whole copy in memory at once (both may be spilling).
        -> `{"nbytes": {key: bytes}}` of the keys now held here."""
        assert self.pool is not None and self.state is not None
        sizes = nbytes or {}
        remaining = {k: [a for a in addrs if a != self.address] for k, addrs in who_has.items() if k not in self.data}
        got: dict = {}

        async def fetch(holder: str, keys: list) -> dict:
            try:
                wpeer = await self.pool.get(holder)  # type: ignore[union-attr]
                return await wpeer.request("get_data", keys=keys)
            except Exception as e:  # noqa: BLE001 - an unreachable holder: try the next one
                logger.info("could not fetch %d replicas from %s: %s", len(keys), holder, e)
                self.pool.forget(holder)  # type: ignore[union-attr]
                return {"data": {}, "nbytes": {}}

        async def from_holder(holder: str, keys: list) -> dict:
            """Fetch `keys` from `holder` in batches, storing each; -> the keys it lacked
            mapped to their remaining holders."""
            left: dict = {}
            for batch in batches(keys, sizes, self.transfer_bytes_limit):
                reply = await fetch(holder, batch)
                values, batch_nbytes = {}, {}
                for key in batch:
                    if key in reply["data"]:
                        values[key] = loads(reply["data"][key])
                        batch_nbytes[key] = reply["nbytes"].get(key, 0)
                    else:
                        left[key] = remaining[key][1:]
                if values and self.status == "running":
                    self._handle([UpdateDataEvent(f"acquire-replicas-{next(self._sid)}", values, batch_nbytes, report=True)])
                    got.update(batch_nbytes)
            return left

        while remaining:
            by_holder: dict[str, list] = {}
            for key, addrs in remaining.items():
                if addrs:
                    by_holder.setdefault(addrs[0], []).append(key)
            if not by_holder:
                break
            lefts = await asyncio.gather(*(from_holder(h, keys) for h, keys in by_holder.items()))
            remaining = {k: v for left in lefts for k, v in left.items()}
        return {"nbytes": got}


def batches(keys: list, nbytes: dict, limit: int) -> Iterator[list]:
    """`keys` in order, cut into lists of at most `limit` bytes by `nbytes` (a key of
    unknown size counts 0; a key bigger than `limit` goes alone)."""
    batch: list = []
    size = 0
    for key in keys:
        n = int(nbytes.get(key) or 0)
        if batch and size + n > limit:
            yield batch
            batch, size = [], 0
        batch.append(key)
        size += n
    if batch:
        yield batch


def read_serialized(store: SpillStore, keys: list) -> dict:
    out = {}
    for k in keys:
        try:
            out[k] = store.serialized(k)
        except KeyError:  # freed meanwhile
            pass
    return out
