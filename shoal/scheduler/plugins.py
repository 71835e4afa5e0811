"""Scheduler and nanny plugins (`shoal.diagnostics.plugin`), held by the scheduler.

`PluginHost` owns the scheduler's plugins: it runs their `start` when they are
registered and `before_close` / `close` when the scheduler closes (or `close` when one is
unregistered), and the I/O shell calls `fire(hook, ...)` at the points of its life
(`add_worker`, `remove_worker`, `add_client`, `remove_client`, `update_graph`, `restart`,
`log_event`) — only when a plugin overrides that hook, so with none registered the cost
is one falsy check. Task transitions reach plugins through the state machine's observer
mechanism (`observers.py`): the host registers itself as one observer while any plugin
has a `transition` hook, and the state machine stays pure.

A hook that raises is logged and changes nothing else; a hook that returns an awaitable
runs as a background task the host owns (cancelled on close).

Nanny plugins are opaque (`Pickled`) here: the scheduler keeps them, hands them to
every nanny that registers, and forwards (un)registrations to the connected nannies.
The scheduler never unpickles them; it does unpickle scheduler plugins, which only an
authenticated client can send (like `run_on_scheduler`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from shoal.background import BackgroundTasks
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.rpc import Peer
from shoal.scheduler.extension import SchedulerExtension
from shoal.utils import overrides_hook

logger = logging.getLogger("shoal.scheduler")


class PluginHost(SchedulerExtension):
    """The scheduler extension holding the scheduler and nanny plugins. Its extension
    hooks (`add_worker`, ..., `restart`) call the plugins' hooks of the same name, with
    the arguments `SchedulerPlugin` documents."""

    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        #: scheduler plugins by name
        self.plugins: dict[str, Any] = {}
        #: hook name -> {plugin name: plugin} of the plugins that override it
        self._hooks: dict[str, dict[str, Any]] = {}
        #: nanny plugins by name, as sent by a client
        self.nanny_plugins: dict[str, Pickled] = {}
        self._tasks = BackgroundTasks("the scheduler plugins")

    def handlers(self) -> dict[str, Any]:
        return {op: getattr(self, op) for op in (
            "register_scheduler_plugin", "unregister_scheduler_plugin", "register_nanny_plugin",
            "unregister_nanny_plugin",
        )}  # fmt: skip

    # ------------------------------------------------------------------ extension hooks

    def add_worker(self, address: str, stimulus_id: str) -> None:
        if "add_worker" in self._hooks:
            self.fire("add_worker", self.scheduler, worker=address)

    def remove_worker(self, address: str, reason: str, stimulus_id: str) -> None:
        if "remove_worker" in self._hooks:
            self.fire("remove_worker", self.scheduler, worker=address, stimulus_id=stimulus_id)

    def add_client(self, client_id: str, stimulus_id: str) -> None:
        if "add_client" in self._hooks:
            self.fire("add_client", self.scheduler, client=client_id)

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        if "remove_client" in self._hooks:
            self.fire("remove_client", self.scheduler, client=client_id)

    def restart(self, stimulus_id: str) -> None:
        if "restart" in self._hooks:
            self.fire("restart", self.scheduler)

    # ------------------------------------------------------------------ scheduler plugins

    async def add(self, plugin: Any, name: str, idempotent: bool = False) -> None:
        """Register `plugin` under `name` and run its `start(scheduler)`; a plugin of
        the same name is replaced, after its `close()` (without `idempotent`), or kept."""
        if name in self.plugins:
            if idempotent:
                return
            await self.remove(name)  # the replaced plugin is closed
        start = getattr(plugin, "start", None)
        if start is not None:
            result = start(self.scheduler)
            if inspect.isawaitable(result):
                await result
        self.register(plugin, name)

    def register(self, plugin: Any, name: str) -> None:
        """Hook `plugin` in under `name` without calling its `start` (distributed's
        synchronous `Scheduler.add_plugin`); a plugin of that name is replaced, its
        `close()` run in the background."""
        if name in self.plugins:
            old = self._forget(name)
            close = getattr(old, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    self._tasks.spawn(_logged(result, name, "close"))
        self.plugins[name] = plugin
        for hook in _HOOKS:
            if overrides_hook(plugin, hook):
                self._hooks.setdefault(hook, {})[name] = plugin
        observers = self.scheduler.state.observers
        if "transition" in self._hooks and self not in observers:
            observers.append(self)

    async def remove(self, name: str) -> None:
        """Unregister plugin `name` and run its `close()`."""
        if name not in self.plugins:
            raise ValueError(f"Could not find plugin {name!r} among the current scheduler plugins")
        plugin = self._forget(name)
        close = getattr(plugin, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result

    def _forget(self, name: str) -> Any:
        plugin = self.plugins.pop(name)
        for hook in list(self._hooks):
            self._hooks[hook].pop(name, None)
            if not self._hooks[hook]:
                del self._hooks[hook]
        observers = self.scheduler.state.observers
        if "transition" not in self._hooks and self in observers:
            observers.remove(self)
        return plugin

    def wants(self, hook: str) -> bool:
        """Whether some plugin has hook `hook`."""
        return hook in self._hooks

    @property
    def active(self) -> bool:
        """Whether some plugin has any hook the shell fires."""
        return bool(self._hooks)

    def fire(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Call `hook(*args, **kwargs)` on every plugin that overrides it."""
        for name, plugin in list(self._hooks.get(hook, {}).items()):
            try:
                result = getattr(plugin, hook)(*args, **kwargs)
            except Exception:
                logger.exception("scheduler plugin %r failed in %s", name, hook)
                continue
            if inspect.isawaitable(result):
                self._tasks.spawn(_logged(result, name, hook))

    async def close(self) -> None:
        """`before_close()` then `close()` of every plugin; background hooks cancelled.
        No hook fires after this (e.g. for the workers that leave as the scheduler closes)."""
        self._hooks.clear()
        if self in self.scheduler.state.observers:
            self.scheduler.state.observers.remove(self)
        for hook in ("before_close", "close"):
            for name, plugin in list(self.plugins.items()):
                method = getattr(plugin, hook, None)
                if method is None:
                    continue
                try:
                    result = method()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("scheduler plugin %r failed in %s", name, hook)
        await self._tasks.close()

    # the observer protocol of `SchedulerState.observers`

    def transition(self, ts: Any, start: str, stimulus_id: str) -> None:
        key, finish = ts.key, ts.state
        for name, plugin in list(self._hooks.get("transition", {}).items()):
            try:
                plugin.transition(key, start, finish, stimulus_id=stimulus_id)
            except Exception:
                logger.exception("scheduler plugin %r failed in transition(%r, %r, %r)", name, key, start, finish)

    def new_keys(self, client_id: str, keys: tuple) -> None:
        pass

    # ------------------------------------------------------------------ request handlers

    async def register_scheduler_plugin(
        self, peer: Peer, plugin: Pickled, name: str, idempotent: bool = False
    ) -> None:
        await self.add(loads(plugin), name, idempotent)

    async def unregister_scheduler_plugin(self, peer: Peer, name: str) -> None:
        await self.remove(name)

    async def register_nanny_plugin(
        self, peer: Peer, plugin: Pickled, name: str, idempotent: bool = False
    ) -> dict:
        """Keep a nanny plugin for future nannies and add it to the connected ones:
        `{nanny_id: (ok, value)}`."""
        if name in self.nanny_plugins and idempotent:
            return {}
        self.nanny_plugins[name] = plugin
        return await self._to_nannies("plugin_add", {"plugin": plugin, "name": name})

    async def unregister_nanny_plugin(self, peer: Peer, name: str) -> dict:
        if self.nanny_plugins.pop(name, None) is None:
            raise ValueError(f"The nanny plugin {name} does not exist")
        return await self._to_nannies("plugin_remove", {"name": name})

    async def _to_nannies(self, op: str, kwargs: dict) -> dict:
        nannies = dict(self.scheduler.nannies)

        async def one(npeer: Peer) -> tuple:
            try:
                reply = await npeer.request_raw(op, **kwargs)
                return (reply.ok, reply.value)
            except Exception as e:  # noqa: BLE001 - reported per nanny
                return (False, dumps(OSError(f"nanny failed to answer: {e}")))

        results = await asyncio.gather(*(one(p) for p in nannies.values()))
        return dict(zip(nannies, results))


#: hooks the shell fires (plus `transition`, through the observer protocol)
_HOOKS = (
    "transition", "add_worker", "remove_worker", "add_client", "remove_client", "update_graph", "restart",
    "log_event",
)  # fmt: skip


async def _logged(aw: Any, name: str, hook: str) -> None:
    try:
        await aw
    except Exception:
        logger.exception("scheduler plugin %r failed in %s", name, hook)

