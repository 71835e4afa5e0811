"""Futures bookkeeping: which keys this client holds, and what the scheduler says of them.

Every `Future` counts as one reference on its key's `FutureState` (`Client.futures`,
`Client.refcount`); the last one released sends `release-keys`. The scheduler's
messages about keys (in memory, erred, cancelled, lost, moved, retried) update those
states here; `cancel` and `retry` change them from the user's side.
"""

from __future__ import annotations

import logging
from typing import Any

from shoal.client.futures import FutureState
from shoal.client.walk import futures_of
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps
from shoal.rpc import Peer

logger = logging.getLogger("shoal.client")


class ReferenceMethods:
    """The client's futures bookkeeping (a mixin of `Client`)."""

    def _inc_ref(self, key: Any) -> FutureState:
        with self._lock:
            st = self.futures.get(key)
            if st is None:
                st = self.futures[key] = FutureState(key)
            self.refcount[key] += 1
            return st

    def _dec_ref(self, key: Any, state: FutureState) -> None:
        with self._lock:
            if self.futures.get(key) is not state:
                return  # cancelled or restarted meanwhile: this reference no longer counts
            n = self.refcount[key] - 1
            if n > 0:
                self.refcount[key] = n
                return
            del self.refcount[key]
            del self.futures[key]
        if self.status == "running":
            self.outbox.send(m.ReleaseKeys((key,)))

    def _on_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        futures = self.futures
        for msg in msgs:
            t = type(msg)
            if t is m.KeyInMemory:
                st = futures.get(msg.key)
                if st is not None:
                    st.finish(msg.type_name, msg.workers, msg.inline)
            elif t is m.TaskErred:
                st = futures.get(msg.key)
                if st is not None:
                    exc = msg.exception if self.families.accept_errors else _error_from_text(msg.text)
                    st.set_error(exc, msg.traceback, msg.text)
            elif t is m.CancelledKeys:
                if msg.reason == m.RESTART_REASON:  # no keys: the restart is complete
                    self._forget_restarted(msg.keys or None, new_generation=not msg.keys)
                    continue
                for key in msg.keys:
                    st = futures.get(key)
                    if st is not None:
                        st.cancel(msg.reason, msg.msg)
            elif t is m.LostData:
                st = futures.get(msg.key)
                if st is not None:
                    st.lost()
            elif t is m.KeyMoved:
                st = futures.get(msg.key)
                if st is not None:
                    st.moved(msg.workers)
            elif t is m.TaskRetried:
                st = futures.get(msg.key)
                if st is not None:
                    st.retry()
            elif t is m.TopicEvent:
                self._handle_event(msg)
            else:
                logger.warning("unexpected message from the scheduler: %s", msg.op)

    def _forget_restarted(self, keys: Any, new_generation: bool = False) -> None:
        """The scheduler restarted: cancel these futures (all if `keys` is None) and forget them."""
        with self._lock:
            if keys is None:
                keys = list(self.futures)
            states = [st for st in (self.futures.pop(k, None) for k in keys) if st is not None]
            for k in keys:
                self.refcount.pop(k, None)
            if new_generation:
                self.generation += 1
        for st in states:
            st.cancel(m.RESTART_REASON, m.RESTART_MSG)

    def futures_of(self, futures: Any) -> list:
        """The futures inside `futures` (nested collections, dask collections), bound to
        this client (distributed's `Client.futures_of`)."""
        return futures_of(futures, client=self)

    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False, reason: str | None = None, msg: str | None = None) -> Any:
        """Cancel these futures and everything that depends on them."""
        return self.sync(self._cancel, futures, force=force, reason=reason, msg=msg, asynchronous=asynchronous)

    async def _cancel(self, futures: Any, force: bool = False, reason: str | None = None, msg: str | None = None) -> None:
        keys = [f.key for f in futures_of(futures)]
        with self._lock:
            for k in keys:
                st = self.futures.pop(k, None)
                self.refcount.pop(k, None)
                if st is not None:
                    st.cancel(reason, msg)
        self.outbox.send(m.CancelKeys(tuple(keys), force, reason, msg))

    def retry(self, futures: Any, asynchronous: Any = None) -> Any:
        return self.sync(self._retry, futures, asynchronous=asynchronous)

    async def _retry(self, futures: Any) -> None:
        keys = tuple(f.key for f in futures_of(futures))
        for key in keys:  # pending again right away, so result() waits for the new run
            st = self.futures.get(key)
            if st is not None and st.status == "error":
                st.retry()
        self.outbox.send(m.RetryKeys(keys))


def _error_from_text(text: str) -> Pickled:
    """A task's error for a client that does not unpickle errors: rebuilt here from its
    text (a plain exception, nothing from the cluster is loaded)."""
    return dumps(RuntimeError(text or "the task failed"))

