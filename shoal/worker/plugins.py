"""The worker's plugins (`Client.register_plugin`, `shoal.diagnostics.plugin.WorkerPlugin`):
`plugin_add` / `plugin_remove` run their `setup` / `teardown`; a plugin's `transition`
hook observes the state machine's story only while one is registered. A mixin of
`shoal.worker.server.Worker`.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from shoal.utils import overrides_hook

logger = logging.getLogger("shoal.worker")


class Plugins:
    """The plugin host side of `Worker` (see the module docstring)."""

    async def plugin_add(self, plugin: Any, name: str) -> None:
        """Add a worker plugin under `name` (replacing, after its teardown, one of the
        same name) and run its `setup(worker)`; errors in `setup` are raised (the plugin
        stays registered, as in distributed)."""
        if name in self.plugins:
            await self.plugin_remove(name)
        self.plugins[name] = plugin
        if overrides_hook(plugin, "transition"):
            self._transition_plugins[name] = plugin
            assert self.state is not None
            if self._plugin_transition not in self.state.observers:
                self.state.observers.append(self._plugin_transition)
        setup = getattr(plugin, "setup", None)
        if setup is not None:
            result = setup(worker=self)
            if inspect.isawaitable(result):
                await result

    async def plugin_remove(self, name: str) -> None:
        """Remove plugin `name` and run its `teardown(worker)`; errors are raised."""
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"The worker plugin {name} does not exist")
        self._transition_plugins.pop(name, None)
        if not self._transition_plugins and self.state is not None and self._plugin_transition in self.state.observers:
            self.state.observers.remove(self._plugin_transition)
        teardown = getattr(plugin, "teardown", None)
        if teardown is not None:
            result = teardown(worker=self)
            if inspect.isawaitable(result):
                await result

    def _plugin_transition(self, key: Any, start: str, finish: str, stimulus_id: str) -> None:
        """State machine observer: the story entry, to each plugin's `transition`."""
        for name, plugin in list(self._transition_plugins.items()):
            try:
                plugin.transition(key, start, finish, stimulus_id=stimulus_id)
            except Exception:
                logger.exception("worker plugin %r failed in transition(%r, %r, %r)", name, key, start, finish)
