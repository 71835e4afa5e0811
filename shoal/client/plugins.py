"""Extending the workers, nannies and scheduler from a client: plugins, uploaded files,
worker setup callbacks, forwarded logging.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from typing import Any

from dask.utils import funcname

from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.rpc import Peer



class PluginMethods:
    """The client's plugin methods (a mixin of `Client`)."""

    async def _worker_setup(
        self, name: str, function: Any, args: tuple, kwargs: dict, idempotent: bool = False
    ) -> dict:
        """Have every current and future worker run `function(*args, **kwargs)` (given
        `dask_worker=` if it takes it); errors on current workers are raised."""
        assert self.scheduler_comm is not None
        replies = await self.scheduler_comm.request(
            "add_worker_setup", name=name, function=dumps(function), args=dumps((args, kwargs)),
            idempotent=idempotent,
        )  # fmt: skip
        return _ok_replies(replies)

    def register_plugin(self, plugin: Any, name: str | None = None, idempotent: bool | None = None) -> Any:
        """Register a `SchedulerPlugin` (runs in the scheduler), a `WorkerPlugin` (runs
        in every current and future worker) or a `NannyPlugin` (every current and future
        nanny) under `name` (default: `plugin.name`, or a generated one). With
        `idempotent` (default: the plugin's `idempotent` attribute) a plugin of the same
        name already registered is kept. Worker and nanny plugins return
        `{worker address | nanny id: {"status": "OK"}}`; an error in their `setup` on a
        current worker or nanny is re-raised here."""
        from shoal.diagnostics.builtin_plugins import PluginRecipe
        from shoal.diagnostics.plugin import NannyPlugin, SchedulerPlugin, WorkerPlugin, plugin_name

        if isinstance(plugin, type):
            raise TypeError("Please provide an instance of a plugin, not a type.")
        if isinstance(plugin, PluginRecipe):  # PipInstall, UploadDirectory, ...: run in workers or nannies
            plugin = plugin.as_plugin()
        if not isinstance(plugin, (SchedulerPlugin, WorkerPlugin, NannyPlugin)):
            raise TypeError(
                "Registering duck-typed plugins is not allowed. Please inherit from "
                "NannyPlugin, WorkerPlugin, or SchedulerPlugin to create a plugin."
            )
        if name is None:
            name = plugin_name(plugin)
        if idempotent is None:
            idempotent = bool(getattr(plugin, "idempotent", False))
        if isinstance(plugin, SchedulerPlugin):
            return self.sync(self._register_scheduler_plugin, plugin, name, idempotent)
        if isinstance(plugin, NannyPlugin):
            return self.sync(self._register_nanny_plugin, plugin, name, idempotent)
        return self.sync(self._register_worker_plugin, plugin, name, idempotent)

    async def _register_scheduler_plugin(self, plugin: Any, name: str, idempotent: bool) -> None:
        assert self.scheduler_comm is not None
        await self.scheduler_comm.request(
            "register_scheduler_plugin", plugin=dumps(plugin), name=name, idempotent=idempotent
        )

    async def _register_worker_plugin(self, plugin: Any, name: str, idempotent: bool) -> dict:
        from shoal.diagnostics.plugin import add_worker_plugin

        return await self._worker_setup(name, add_worker_plugin, (plugin, name), {}, idempotent)

    async def _register_nanny_plugin(self, plugin: Any, name: str, idempotent: bool) -> dict:
        assert self.scheduler_comm is not None
        replies = await self.scheduler_comm.request(
            "register_nanny_plugin", plugin=dumps(plugin), name=name, idempotent=idempotent
        )
        return _ok_replies(replies)

    def register_worker_plugin(self, plugin: Any = None, name: str | None = None, nanny: bool | None = None) -> Any:
        """Deprecated: use `register_plugin`."""
        warnings.warn(
            "`Client.register_worker_plugin` has been deprecated; please use `Client.register_plugin` instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.register_plugin(plugin, name=name)

    def register_scheduler_plugin(self, plugin: Any, name: str | None = None, idempotent: bool | None = None) -> Any:
        """Deprecated: use `register_plugin`."""
        warnings.warn(
            "`Client.register_scheduler_plugin` has been deprecated; please use `Client.register_plugin` instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.register_plugin(plugin, name=name, idempotent=idempotent)

    def unregister_scheduler_plugin(self, name: str) -> Any:
        """Remove scheduler plugin `name` (its `close()` runs); unknown: `ValueError`."""

        async def call() -> None:
            assert self.scheduler_comm is not None
            await self.scheduler_comm.request("unregister_scheduler_plugin", name=name)

        return self.sync(call)

    def unregister_worker_plugin(self, name: str, nanny: bool | None = None) -> Any:
        """Remove worker plugin `name` (nanny plugin with `nanny=True`) from every worker
        (nanny), running its `teardown`; errors there are re-raised, an unknown name is a
        `ValueError`. Returns `{address | nanny id: {"status": "OK"}}`."""
        from shoal.diagnostics.plugin import remove_worker_plugin

        async def call() -> dict:
            assert self.scheduler_comm is not None
            if nanny:
                replies = await self.scheduler_comm.request("unregister_nanny_plugin", name=name)
            else:
                replies = await self.scheduler_comm.request(
                    "remove_worker_setup", name=name, function=dumps(remove_worker_plugin),
                    args=dumps(((name,), {})), missing=f"The worker plugin {name} does not exist",
                )  # fmt: skip
            return _ok_replies(replies)

        return self.sync(call)

    def upload_file(self, filename: str, load: bool = True) -> Any:
        """Copy a local file to the scheduler and into the local directory of every
        current and future worker (that directory goes on their `sys.path`); with
        `load`, import it there (`.py`: the module, reloaded if it was imported before;
        `.zip` / `.egg` / `.pyz`: put on `sys.path` and its top-level modules imported),
        so tasks can use it. Other file types need `load=False` (`ValueError`
        otherwise). Uploading a file of the same name again replaces it everywhere.
        Returns `{address: {"status": "OK"}}`; an import error is re-raised."""
        from shoal.diagnostics.plugin import SchedulerUploadFile, UploadFile

        plugin = UploadFile(filename, load=load)
        name = f"upload-file-{plugin.filename}"  # a new upload of the file replaces the old one

        async def call() -> dict:
            await self._register_scheduler_plugin(SchedulerUploadFile(filename, load=load), name, False)
            return await self._register_worker_plugin(plugin, name, False)

        return self.sync(call)

    def register_worker_callbacks(self, setup: Any = None) -> Any:
        """Run `setup` (it may take `dask_worker=`) on every current worker now and on
        every worker that joins later, before it gets any task. Returns
        `{address: {"status": "OK"}}`; an exception in `setup` is re-raised."""
        if not callable(setup):
            raise TypeError(f"setup must be a callable, got {type(setup).__name__}")
        name = f"{funcname(setup)}-{uuid.uuid4()}"
        return self.sync(self._worker_setup, name, setup, (), {})

    def forward_logging(self, logger_name: str | None = None, level: int = logging.NOTSET) -> Any:
        """Re-emit here the records of logger `logger_name` (None: all) at `level` or
        above that tasks emit on workers, each with a `worker` attribute (the worker's
        address); applies to current and future workers. Idempotent. Returns
        `{address: {"status": "OK"}}`. As in distributed, the logger's own level on the
        workers still applies (records it drops are never created)."""
        from shoal import forward_logging as fl

        async def call() -> dict:
            assert self.scheduler_comm is not None
            self.scheduler_comm.handlers["forwarded_log"] = _on_forwarded_log
            await self.scheduler_comm.request("subscribe_logs", logger_name=logger_name, subscribe=True)
            return await self._worker_setup(fl.setup_name(logger_name), fl.install, (logger_name, level), {})

        return self.sync(call)

    def unforward_logging(self, logger_name: str | None = None) -> Any:
        """Stop forwarding `logger_name` (undoes `forward_logging(logger_name)`)."""
        from shoal import forward_logging as fl

        async def call() -> None:
            assert self.scheduler_comm is not None
            await self.scheduler_comm.request("subscribe_logs", logger_name=logger_name, subscribe=False)
            await self.scheduler_comm.request(
                "remove_worker_setup", name=fl.setup_name(logger_name), function=dumps(fl.uninstall),
                args=dumps(((logger_name,), {})),
            )  # fmt: skip

        return self.sync(call)


async def _on_forwarded_log(peer: Peer, record: dict, worker: str) -> None:
    from shoal.forward_logging import reemit

    reemit(record, worker)


def _ok_replies(replies: dict) -> dict:
    """`{address: {"status": "OK"}}` from broadcast replies `{address: (ok, value)}`,
    raising the first error."""
    out = {}
    for addr, (ok, value) in replies.items():
        if not ok:
            exc = loads(value) if isinstance(value, Pickled) else value
            raise exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        out[addr] = {"status": "OK"}
    return out

