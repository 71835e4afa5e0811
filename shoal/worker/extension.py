"""The public door for what lives in a worker beside its state machine.

A worker *extension* (the shuffle service's buffers, a task-side client, ...) comes in
through `Worker.add_extension(name, extension)` and uses only the worker's public
members:

- ``worker.store``: where results live (a `SpillStore` when the worker spills, else a
  dict; read and write it from the event loop, or from a task's thread for the keys
  that task owns), ``worker.memory_limits`` (`shoal.worker.memory.MemoryLimits`) and
  ``worker.metrics()``; ``worker.local_directory`` for files of its own;
- ``worker.state`` (read only: `WorkerState`);
- ``worker.scheduler`` (the scheduler connection: ``await worker.scheduler.request(op,
  **kwargs)``) and ``worker.pool`` (connections to peers: ``peer = await
  worker.pool.get(address)``, then ``await peer.request(op, **kwargs)``);
- ``worker.spawn(coro)``: a background task the worker owns (cancelled and awaited when
  it closes); ``worker.log_event(topic, msg)``.

What the worker calls on an extension (override what you need):

- ``handlers()``: ``{op: handler}``, request handlers for the scheduler, peers and
  clients, called ``handler(peer, **arguments)`` (plain or coroutine functions); two
  extensions may not register the same op (`ValueError`);
- ``start()`` (may be async): once the worker has its store and its scheduler
  connection (or at once if it runs already);
- ``close()`` (may be async): when the worker closes, before its connections and its
  store go, in reverse order of addition.

A hook that raises is logged; it never stops the worker or the other extensions.
"""

from __future__ import annotations

from typing import Any

from shoal.rpc.server import Extension

__all__ = ["WorkerExtension"]


class WorkerExtension(Extension):
    """Base class of worker extensions (see the module docstring): `handlers`, `start`
    and `close` (no-ops) come from `shoal.rpc.server.Extension`."""

    def __init__(self, worker: Any):
        super().__init__(worker)
        self.worker = worker
