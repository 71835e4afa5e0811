"""The public door for what lives in the scheduler beside the state machine.

An *extension* is an object the scheduler hosts: the coordination primitives
(`shoal.sync.server`), published datasets (`shoal.scheduler.datasets`), plugins,
cluster management (`admin.py`), profiling, memory samplers, and the shuffle service.
It comes in through `Scheduler.add_extension(name, extension)` and uses only the
scheduler's public members:

- ``scheduler.state`` (read only: `SchedulerState`), ``scheduler.clients`` /
  ``scheduler.workers`` / ``scheduler.nannies`` (connections by id, read only);
- ``scheduler.stimulate(*events)``: the one way to change the state machine's state
  (`shoal.scheduler.events`: `HoldKeys` / `ReleaseHold` to keep futures' keys alive
  under a name that is no client, `WantKeys` to make a client want keys before a reply
  hands it futures, `DropReplicas`, `SetRetiring`, ...), with a stimulus id from
  ``scheduler.new_stimulus_id(prefix)``;
- ``scheduler.broadcast(op, workers=None, **kwargs)``: call a worker operation on some or
  all workers, ``{address: (ok, value)}``; ``scheduler.select_workers(names)``;
- ``scheduler.spawn(coro)``: a background task the scheduler owns (cancelled and
  awaited when it closes);
- ``scheduler.log_event(topic, msg)``.

What the scheduler calls on an extension (override what you need; the scheduler calls a
hook only if the extension's class overrides it, so unused hooks cost nothing):

- ``handlers()``: ``{op: handler}``, registered as request handlers; a handler is called
  ``handler(peer, **arguments)`` and may be a plain function or a coroutine function.
  Two extensions may not register the same op (`ValueError`).
- ``start()`` (may be async): when the scheduler starts (or at once if it runs already);
- ``add_worker(address, stimulus_id)`` / ``remove_worker(address, reason, stimulus_id)``:
  after the state machine handled the worker's arrival / departure;
- ``add_client(client_id, stimulus_id)`` / ``remove_client(client_id, stimulus_id)``: after
  the state machine handled it; on removal free whatever the client held (leases, ...);
- ``restart(stimulus_id)``: after `Scheduler.restart` made the state machine forget every
  task (the `Restart` event), before the workers restart;
- ``close()`` (may be async): when the scheduler closes, in reverse order of addition.

A hook that raises is logged; it never stops the scheduler or the other extensions.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from shoal.rpc.server import Extension

__all__ = ["HOOKS", "SchedulerExtension", "call_hook", "overridden_hooks"]

logger = logging.getLogger("shoal.scheduler")

#: the life-cycle hooks the scheduler calls on extensions
HOOKS = ("add_worker", "remove_worker", "add_client", "remove_client", "restart")


class SchedulerExtension(Extension):
    """Base class of scheduler extensions (see the module docstring). Every hook is a
    no-op here; `handlers`, `start` and `close` come from `shoal.rpc.server.Extension`."""

    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        self.scheduler = scheduler

    def add_worker(self, address: str, stimulus_id: str) -> None:
        pass

    def remove_worker(self, address: str, reason: str, stimulus_id: str) -> None:
        pass

    def add_client(self, client_id: str, stimulus_id: str) -> None:
        pass

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        pass

    def restart(self, stimulus_id: str) -> None:
        pass


def overridden_hooks(extension: Any) -> list[str]:
    """The hooks of `HOOKS` that `extension` really implements (a `SchedulerExtension`
    subclass overriding them, or any object with such a method)."""
    out = []
    for hook in HOOKS:
        method = getattr(type(extension), hook, None)
        if method is not None and method is not getattr(SchedulerExtension, hook):
            out.append(hook)
    return out


def call_hook(name: str, extension: Any, hook: str, *args: Any) -> None:
    """Call `extension.<hook>(*args)`, logging (not raising) what it raises; an
    awaitable result is the extension's to own, so it is refused."""
    try:
        result = getattr(extension, hook)(*args)
    except Exception:
        logger.exception("scheduler extension %r failed in %s%r", name, hook, args)
        return
    if inspect.isawaitable(result):
        logger.error("scheduler extension %r: %s must not return an awaitable (use scheduler.spawn)", name, hook)
        if inspect.iscoroutine(result):
            result.close()
