"""The worker's actors (`shoal.actor`): an actor task's object stays here
(`WorkerState.actors`) and its proxy is the task's result. `actor-call` messages from any
connection run the object's plain methods (and attribute reads) in arrival order on one
dedicated thread, started on first use; ``async def`` methods run on the event loop.
Outcomes go back as `actor-result` on the connection the call came from, collected like
task completions (one loop wake-up per batch). A mixin of `shoal.worker.server.Worker`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import queue
import threading
from threading import get_ident
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads
from shoal.rpc import Peer
from shoal.utils import typename
from shoal.worker.execution import pack_exception, thread_state
from shoal.worker.sizeof import sizeof
from shoal.worker.state import Execute, ExecuteSuccess

logger = logging.getLogger("shoal.worker")

_MISSING = object()


class Actors:
    """The actor side of `Worker` (see the module docstring)."""

    def _actor_created(self, inst: Execute, instance: Any, start: float, stop: float) -> ExecuteSuccess:
        from shoal.actor import Actor

        proxy = Actor(type(instance), self.address, inst.key)
        inline = dumps(proxy) if inst.send_inline else None
        if inline is not None and (inline.nbytes > self.inline_limit or inline.buffers):
            inline = None
        nbytes = sizeof(instance)
        name = typename(type(instance))
        return ExecuteSuccess(
            "execute", inst.key, inst.run_id, proxy, nbytes, name, start, stop, inline, instance=instance, thread=get_ident()
        )

    # ------------------------------------------------------------------ actors

    def _on_peer_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        for msg in msgs:
            if type(msg) is m.ActorCall:
                self._actor_call(peer, msg)
            else:
                logger.warning("unexpected message from %s: %s", peer.address, msg.op)

    def _actor_call(self, peer: Peer, msg: m.ActorCall) -> None:
        if not msg.attribute:
            instance = self.state.actors.get(msg.key)  # type: ignore[union-attr]
            if instance is not None and inspect.iscoroutinefunction(getattr(instance, msg.name, None)):
                self.spawn(self._actor_call_async(peer, msg, instance))
                return
        q = self._actor_queue
        if q is None:
            q = self._actor_queue = queue.SimpleQueue()
            self._actor_thread = threading.Thread(target=self._actor_work, name="shoal-actor", daemon=True)
            self._actor_thread.start()
        q.put((peer, msg))

    def _actor_work(self) -> None:
        """The actor thread: runs calls in arrival order, hands outcomes to the loop."""
        thread_state.worker = self
        thread_state.actor = True
        get = self._actor_queue.get  # type: ignore[union-attr]
        actors = self.state.actors  # type: ignore[union-attr]
        put = self.actor_results.put
        while True:
            item = get()
            if item is None:
                return
            peer, msg = item
            try:
                instance = actors.get(msg.key, _MISSING)
                if instance is _MISSING:
                    raise ValueError(f"Actor {msg.key!r} is not held by worker {self.address}")
                attr = getattr(instance, msg.name)
                if msg.attribute:
                    value = attr
                elif msg.args is None:
                    value = attr()
                else:
                    args, kwargs = loads(msg.args)
                    value = attr(*args, **kwargs)
                reply = m.ActorResult(msg.id, True, dumps(value))
            except BaseException as e:  # noqa: BLE001 - the method's failure is its result
                reply = m.ActorResult(msg.id, False, pack_exception(e)[0])
            if not put((peer, reply)):
                return  # the loop is closed: the worker is going away

    def _send_actor_results(self, done: collections.deque) -> None:
        """The loop's side of `actor_results`: each reply on its connection."""
        while done:
            peer, reply = done.popleft()
            if not peer.closed:
                peer.send(reply)

    async def _actor_call_async(self, peer: Peer, msg: m.ActorCall, instance: Any) -> None:
        try:
            if msg.args is None:
                value = await getattr(instance, msg.name)()
            else:
                args, kwargs = loads(msg.args)
                value = await getattr(instance, msg.name)(*args, **kwargs)
            reply = m.ActorResult(msg.id, True, dumps(value))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - the method's failure is its result
            reply = m.ActorResult(msg.id, False, pack_exception(e)[0])
        if not peer.closed:
            peer.send(reply)
