"""Moving data between the client and the workers: results, `gather`, `scatter`, and
where data lives (`who_has`, `has_what`, `nthreads`, `processing`, `replicate`,
`rebalance`, `nbytes`).

Results are fetched straight from the workers that hold them (small ones arrived
inline with their completion message); where a key lives comes from the scheduler's
messages, never from polling.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from dask.base import tokenize
from dask.typing import no_default

from shoal.actor import Actor
from shoal.client.futures import Future, FutureState
from shoal.client.walk import collect, futures_of, is_container, rebuild, replace
from shoal.comm.errors import CommClosedError
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads
from shoal.utils import parse_timeout, typename

logger = logging.getLogger("shoal.client")


class TransferMethods:
    """The client's data movement methods (a mixin of `Client`)."""

    @staticmethod
    async def _wait_done(st: FutureState, timeout: Any) -> None:
        if st.done():
            return
        try:
            await asyncio.wait_for(st.wait(), parse_timeout(timeout))
        except asyncio.TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s.") from None

    async def _result(self, future: Future, timeout: Any = None) -> Any:
        st = future._state
        assert st is not None
        await self._wait_done(st, timeout)
        if st.status == "error":
            __tracebackhide__ = True  # noqa: F841 - pytest (and IPython's debugger) leave this frame out
            raise st.exception()  # the awaiting line, then the task's frames
        st.raise_if_failed()
        return (await self._gather_states([st]))[0]

    async def _future_exception(self, future: Future, timeout: Any = None) -> Any:
        st = future._state
        assert st is not None
        await self._wait_done(st, timeout)
        return st.exception() if st.status == "error" else None

    async def _future_traceback(self, future: Future, timeout: Any = None) -> Any:
        st = future._state
        assert st is not None
        await self._wait_done(st, timeout)
        return st.traceback()

    async def _gather_states(self, states: list[FutureState]) -> list:
        """Values of finished keys: inline ones directly, the rest from their workers.

        Where a key lives comes from the scheduler's messages (`key-in-memory`, and
        `key-moved` / `lost-data` when a holder dies), never from polling: a key whose
        known holders could not be reached waits for its next transition (see
        `_wait_for_holders`), all such keys at once."""
        out: list = [None] * len(states)
        todo: dict[Any, list[int]] = {}
        for i, st in enumerate(states):
            if st.inline is not None:
                out[i] = self._loaded(st.inline)
            else:
                todo.setdefault(st.key, []).append(i)
        attempts = 0
        #: workers this gather could not reach (dead, or dying and not yet removed)
        unreachable: set[str] = set()
        patience = 0.5
        while todo:
            by_worker: dict[str, list] = {}
            stranded: list[FutureState] = []
            for key, idxs in todo.items():
                st = states[idxs[0]]
                if st.status != "finished":
                    await st.wait()
                    st.raise_if_failed()
                    if st.inline is not None:
                        continue
                holders = [w for w in st.workers if w not in unreachable]
                if holders:
                    by_worker.setdefault(holders[attempts % len(holders)], []).append(key)
                else:
                    stranded.append(st)
            for key in [k for k in todo if states[todo[k][0]].inline is not None]:
                for i in todo.pop(key):
                    out[i] = self._loaded(states[i].inline)
            if stranded and not by_worker:
                if await self._wait_for_holders(stranded, unreachable, patience):
                    patience = 0.5
                else:  # no news within `patience`: maybe a worker we gave up on is fine after all
                    unreachable.clear()
                    patience = min(2 * patience, 5.0)
                continue
            results = await asyncio.gather(*(self._fetch(w, keys) for w, keys in by_worker.items()))
            for (worker, asked), (reached, data) in zip(by_worker.items(), results):
                if not reached:
                    unreachable.add(worker)
                for key, value in data.items():
                    for i in todo.pop(key, ()):
                        out[i] = self._loaded(value)
                if reached:
                    for key in asked:
                        if key in todo:  # the worker no longer holds it (moved, dropped)
                            st = states[todo[key][0]]
                            st.workers = tuple(w for w in st.workers if w != worker)
            attempts += 1
        return out

    def _loaded(self, p: Any) -> Any:
        """A result's value; an actor proxy among them holds a reference on its actor."""
        if type(p) is _InPlace:
            # an actor proxy is the worker's own object: the caller gets a proxy of its own
            value = loads(dumps(p.value)) if type(p.value) is Actor else p.value
        else:
            value = self.families.load(p)
        if type(value) is Actor:
            value.adopt(self, Future)
        return value

    async def _wait_for_holders(self, stranded: list[FutureState], unreachable: set[str], patience: float) -> bool:
        """None of the known holders of these finished keys could be reached. Ask the
        scheduler once where they are; those it places only on unreachable workers wait
        (together, at most `patience` seconds) for their next transition, which the
        scheduler sends when it removes the dead worker: `key-moved` (other replicas),
        or `lost-data` and later `key-in-memory` (recomputed). True if every key got a
        new holder or a transition."""
        assert self.scheduler_comm is not None
        who_has = await self.scheduler_comm.request("who_has", keys=[st.key for st in stranded])
        waits = []
        for st in stranded:
            holders = tuple(who_has.get(st.key) or ())
            if st.status != "finished":
                continue  # lost meanwhile: the gather loop waits for it to finish again
            if any(w not in unreachable for w in holders):
                st.workers = holders
            else:
                waits.append(asyncio.ensure_future(st.changed()))
        if not waits:
            return True
        done, pending = await asyncio.wait(waits, timeout=patience)
        for fut in pending:
            fut.cancel()
        return not pending

    def _in_process_worker(self, address: str) -> Any:
        """The worker at `address` if it runs in this process as part of this client's
        own cluster (`processes=False`), else None."""
        for w in getattr(self.cluster, "workers", {}).values() if self.cluster is not None else ():
            try:
                if getattr(w, "address", None) == address and hasattr(w, "data"):
                    return w
            except Exception:  # noqa: BLE001 - a worker not started yet has no address
                continue
        return None

    async def _fetch(self, worker: str, keys: list) -> tuple[bool, dict]:
        """``(reached, data)``: the values `worker` holds of `keys`."""
        assert self._pool is not None
        # (a client that accepts only plain data gets the pickled form, to be checked)
        local = self._in_process_worker(worker) if self.families.accept_any else None
        if local is not None:
            # results of workers in this process are handed over as they are, never
            # pickled (as distributed's in-process transport does): faster, and a result
            # that cannot be pickled still reaches the caller
            data = local.data
            return True, {k: _InPlace(data[k]) for k in keys if k in data}
        try:
            peer = await self._pool.get(worker)
            reply = await peer.request("get_data", keys=keys)
            return True, dict(reply["data"])
        except (OSError, CommClosedError) as e:
            logger.info("could not fetch from %s: %s", worker, e)
            self._pool.forget(worker)
            return False, {}

    def gather(self, futures: Any, errors: str = "raise", direct: Any = None, asynchronous: Any = None) -> Any:
        """The results of `futures` (a Future or nested containers of them), same structure."""
        import queue as queue_mod

        if isinstance(futures, queue_mod.Queue):
            raise TypeError("Dask no longer supports gathering over Iterators and Queues.")
        if isinstance(futures, Iterator):
            return (self.gather(f, errors=errors, direct=direct) for f in futures)
        if self.status == "closed" and errors == "raise" and not asynchronous:
            for f in collect(futures):  # the scheduler went away: say why the futures were cancelled
                if f._state is not None and f._state.status in ("error", "cancelled"):
                    f._state.raise_if_failed()
        return self.sync(self._gather, futures, errors=errors, asynchronous=asynchronous)

    async def _gather(self, futures: Any, errors: str = "raise") -> Any:
        leaves: list[Future] = collect(futures)
        for f in leaves:
            if f.client is not self:
                raise ValueError(
                    "Cannot gather Futures created by another client. "
                    f"These are the futures of another client: {f.key!r}"
                )
        states = {f.key: f._state for f in leaves}
        for st in states.values():
            assert st is not None
            await st.wait()
        bad: set = set()
        for key, st in states.items():
            assert st is not None
            if st.status in ("error", "cancelled"):
                if errors == "raise":
                    st.raise_if_failed()
                bad.add(key)
        good = [st for k, st in states.items() if k not in bad]
        values = dict(zip([st.key for st in good], await self._gather_states(good)))  # type: ignore[union-attr]
        if errors == "skip" and bad:
            if isinstance(futures, list):
                futures = [f for f in futures if not (isinstance(f, Future) and f.key in bad)]
            return replace(futures, lambda f: values.get(f.key))
        return replace(futures, lambda f: values[f.key])

    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool = False,
        direct: Any = None,
        hash: bool = True,
        timeout: Any = no_default,
        asynchronous: Any = None,
    ) -> Any:
        """Put local data on the workers; return Futures pointing at it."""
        import queue as queue_mod

        if isinstance(data, (Iterator, queue_mod.Queue)):
            raise TypeError("Dask no longer supports mapping over Iterators or Queues.Consider using a normal for loop and Client.submit")
        if timeout is no_default:
            timeout = self._timeout
        return self.sync(self._scatter, data, workers=workers, broadcast=broadcast, hash=hash, timeout=timeout, asynchronous=asynchronous)

    async def _scatter(self, data: Any, workers: Any = None, broadcast: Any = False, hash: bool = True, timeout: Any = None) -> Any:
        assert self.scheduler_comm is not None
        if isinstance(data, range):
            data = list(data)
        # one level of the container walker's rule (`shoal.client.walk`)
        if isinstance(data, dict):
            keys = list(data)
            values = list(data.values())
        else:
            values = list(data) if is_container(data) else [data]
            keys = [self._scatter_key(x, hash) for x in values]
        items = dict(zip(keys, values))  # equal values share one key when hashing
        if isinstance(workers, (str, int, float)):
            workers = [workers]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (parse_timeout(timeout) or 0)
        while True:
            nthreads = await self.scheduler_comm.request("nthreads", workers=workers)
            if nthreads or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)  # poll until a worker joins
        if not nthreads:
            raise TimeoutError("No valid workers found")
        addrs = sorted(nthreads)
        slots = [a for a in addrs for _ in range(max(1, nthreads[a]))]
        n_copies = len(addrs) if broadcast is True else int(broadcast or 1)
        targets: dict[str, dict] = {}
        who_has: dict = {}
        for i, (key, value) in enumerate(items.items()):
            chosen = addrs[:n_copies] if broadcast else [slots[i % len(slots)]]
            p = self.families.check_send(dumps(value), f"scattered data {key!r}")
            for a in chosen:
                targets.setdefault(a, {})[key] = p
            who_has[key] = tuple(chosen)

        async def put(addr: str, payload: dict) -> dict:
            assert self._pool is not None
            peer = await self._pool.get(addr)
            return await peer.request("update_data", data=payload)

        replies = await asyncio.gather(*(put(a, d) for a, d in targets.items()))
        nbytes: dict = {}
        for r in replies:
            nbytes.update(r["nbytes"])
        types = {k: typename(type(v)) for k, v in items.items()}
        self.outbox.send(m.UpdateData(who_has, nbytes, types))
        futures = {}
        for key in items:
            f = Future(key, self)
            assert f._state is not None
            if not f._state.done():
                f._state.finish(types[key], who_has[key], None)
            futures[key] = f
        out = [futures[k] for k in keys]
        if isinstance(data, dict):
            return futures
        return rebuild(data, out) if is_container(data) else out[0]

    def _scatter_key(self, x: Any, hash: bool) -> Any:
        if hash:
            return f"{type(x).__name__}-{tokenize(x)}"
        return f"{type(x).__name__}-{uuid.uuid4().hex}"

    def nthreads(self, workers: Any = None, **kwargs: Any) -> Any:
        if isinstance(workers, (str, int, float)):
            workers = [workers]
        return self._request("nthreads", workers=workers)

    ncores = nthreads

    def who_has(self, futures: Any = None, **kwargs: Any) -> Any:
        from shoal.objects import WhoHas

        keys = None if futures is None else [f.key for f in futures_of(futures)]

        async def call() -> Any:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("who_has", keys=keys)
            return WhoHas({k: list(v) for k, v in reply.items()})  # lists, also after msgpack

        return self.sync(call)

    def has_what(self, workers: Any = None, **kwargs: Any) -> Any:
        from shoal.objects import HasWhat

        if isinstance(workers, (str, int, float)):
            workers = [workers]

        async def call() -> Any:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("has_what", workers=workers)
            return HasWhat({w: list(v) for w, v in reply.items()})

        return self.sync(call)

    def processing(self, workers: Any = None) -> Any:
        """`{worker: [keys of the tasks sent to it and not finished]}`."""
        if isinstance(workers, (str, int, float)):
            workers = [workers]

        async def call() -> dict:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("processing", workers=workers)
            return {w: list(keys) for w, keys in reply.items()}  # lists, also after msgpack

        return self.sync(call)

    def _keys_of(self, futures: Any) -> list:
        return [f.key for f in futures_of(futures)]

    async def _wait_keys(self, keys: list) -> None:
        for key in keys:
            st = self.futures.get(key)
            if st is not None:
                await st.wait()
                if st.status != "finished":
                    st.raise_if_failed()

    def replicate(self, futures: Any, n: int | None = None, workers: Any = None, branching_factor: int = 2,
                  **kwargs: Any) -> Any:  # fmt: skip
        """Copy the futures' data so each lives on `n` workers (all of `workers`, or of the
        cluster, when `n` is None); surplus copies beyond `n` are dropped. Waits for the
        futures first. `branching_factor` is accepted for compatibility: each new copy is
        fetched straight from the current holders (the recipient tries them in turn)."""
        if n is not None and n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        keys = self._keys_of(futures)
        if isinstance(workers, (str, int, float)):
            workers = [workers]

        async def call() -> None:
            assert self.scheduler_comm is not None
            await self._wait_keys(keys)
            await self.scheduler_comm.request("replicate", keys=keys, n=n, workers=workers)

        return self.sync(call)

    def rebalance(self, futures: Any = None, workers: Any = None, **kwargs: Any) -> Any:
        """Move data (of `futures`, else all) so every worker (of `workers`, else all)
        holds about the same number of bytes. A key is copied before its old copy is
        dropped, so nothing is lost."""
        keys = None if futures is None else self._keys_of(futures)
        if isinstance(workers, (str, int, float)):
            workers = [workers]

        async def call() -> None:
            assert self.scheduler_comm is not None
            if keys is not None:
                await self._wait_keys(keys)
            await self.scheduler_comm.request("rebalance", keys=keys, workers=workers)

        return self.sync(call)

    def nbytes(self, keys: Any = None, summary: bool = True, **kwargs: Any) -> Any:
        """Bytes of the data in memory: `{key: bytes}`, or summed by key prefix with `summary`."""
        if keys is not None:
            keys = [k.key if isinstance(k, Future) else k for k in keys]
        return self._request("nbytes", keys=keys, summary=summary)


class _InPlace:
    """A result read from an in-process worker's memory (not a pickle)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

