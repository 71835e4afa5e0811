"""`Client`: the user's connection to a shoal cluster. This module is the facade: the
constructor, connecting and closing, the default-client context and the sync/async
bridge. The other methods come from one mixin per concern (`submission`, `references`,
`transfers`, `admin`, `sharing`, `plugins`, `topics`, `introspection`, `reprs` in this
package); their underscore members are this package's own, other modules use public
ones (the "Client" section of docs/design.md lists them).

Every method has an async core that runs on the client's event loop. A blocking client
shares the process-wide loop thread (`shoal._loop`) and its methods block; an
asynchronous client (or any client called from its own loop) returns awaitables.

Messages to the scheduler go through one ordered outbox, whichever thread produces them
(submit from user code, releases from garbage collection), and are flushed on the loop
at the end of its current tick, so a burst of submits becomes one packet. Results are
fetched straight from the workers that hold them; small results arrive inline with the
completion message and need no fetch at all. The scheduler sees task specs only as
opaque bytes.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import inspect
import itertools
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dask
import dask.config
from dask.typing import no_default

from shoal import _loop, config, secret_files
from shoal._context import in_task, provider
from shoal.background import BackgroundTasks
from shoal.client.admin import AdminMethods
from shoal.client.defaults import _current_client, add_default, default_client, registered_clients, remove_default
from shoal.client.futures import FutureState
from shoal.client.introspection import IntrospectionMethods
from shoal.client.outbox import Outbox
from shoal.client.plugins import PluginMethods
from shoal.client.references import ReferenceMethods
from shoal.client.remote_errors import install_excepthook, remote_traceback
from shoal.client.reprs import ReprMethods
from shoal.client.sharing import SharingMethods
from shoal.client.submission import SubmitMethods
from shoal.client.topics import TopicMethods, default_handlers
from shoal.client.transfers import TransferMethods
from shoal.comm import connect
from shoal.comm.errors import AuthenticationError, ProtocolMismatchError
from shoal.exceptions import ClosedClientError
from shoal.protocol import messages as m
from shoal.protocol.families import Families
from shoal.protocol.serialize import Pickled
from shoal.rpc import ConnectionPool, Peer
from shoal.shuffle.method import SERVICE
from shoal.status import StatusAttribute
from shoal.utils import parse_timeout
from shoal.versions import get_versions

logger = logging.getLogger("shoal.client")


class Client(
    SubmitMethods,
    ReferenceMethods,
    TransferMethods,
    AdminMethods,
    PluginMethods,
    SharingMethods,
    TopicMethods,
    IntrospectionMethods,
    ReprMethods,
):
    """Connect to a shoal scheduler, or start a `LocalCluster` when given no address."""

    #: a `shoal.status.Status` (equal to its text too)
    status = StatusAttribute()

    def __init__(
        self,
        address: Any = None,
        loop: Any = None,
        timeout: Any = no_default,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: Any = None,
        serializers: Any = None,
        deserializers: Any = None,
        extensions: Any = None,
        direct_to_workers: Any = None,
        connection_limit: int = 512,
        **kwargs: Any,
    ):
        config.warn_untwinned()
        if timeout is no_default:
            timeout = config.get("comm.timeouts.connect")
        if timeout is None:
            raise ValueError("None is an invalid value for global client timeout")
        self._timeout = parse_timeout(timeout)
        self.scheduler_file = scheduler_file
        if address is None:
            address = dask.config.get("scheduler-address", None)
            if address is None and scheduler_file is not None:
                from shoal.scheduler_file import read_scheduler_file, secret_from

                info = read_scheduler_file(scheduler_file, self._timeout)
                address = info["address"]
                file_secret = secret_from(info)
                if security is None and file_secret is not None:
                    from shoal.security import Security

                    security = Security(file_secret)
        if address is not None and kwargs:
            raise ValueError(f"Unexpected keyword arguments: {sorted(kwargs)}")
        self.cluster: Any = None
        self._owns_cluster = False
        self._cluster_kwargs = kwargs
        if address is not None and not isinstance(address, str):
            if isinstance(getattr(address, "scheduler_address", None), str):
                if getattr(address, "status", "running") in ("closing", "closed"):
                    raise RuntimeError(f"Trying to connect to an already closed or closing Cluster {address}.")
                self.cluster = address
                if security is None:  # the cluster's own credentials (none at all: False)
                    security = getattr(address, "security", None)
                    if security is not None and not getattr(security, "secret", None):
                        security = False
                address = address.scheduler_address
            else:
                raise TypeError(f"Scheduler address must be a string or a Cluster instance, got {type(address)}")
        self._address = address
        self.security = security
        self._secret: bytes | None = None  # the secret used to connect (resolved in _start)
        name = name if name is not None else dask.config.get("client-name", None)
        self.id = f"Client-{name}-{uuid.uuid1()}" if name else f"Client-{uuid.uuid1()}"
        self.status = "newly-created"
        self.futures: dict[Any, FutureState] = {}
        self.refcount: collections.defaultdict[Any, int] = collections.defaultdict(int)
        self.generation = 0
        self._lock = threading.Lock()
        #: every message to the scheduler goes through it, in order (`shoal.client.outbox`)
        self.outbox = Outbox(self)
        self._func_cache: dict[int, tuple[Any, Pickled]] = {}
        self._priority_counter = itertools.count()
        self._asynchronous = asynchronous
        #: what this client sends and accepts (`shoal.protocol.families`)
        self.families = Families(serializers, deserializers)
        self._set_as_default = set_as_default
        self._config_ctx: Any = None
        self._identity: dict = {}
        self.scheduler_comm: Peer | None = None
        self._pool: ConnectionPool | None = None
        #: background tasks the client owns (cancelled and awaited on close)
        self._tasks = BackgroundTasks("the client")
        #: objects other modules attach to this client by name (distributed's
        #: `Client.extensions`; the actors' connections: "actors"); each one's `close()`
        #: (may be async) runs when the client closes
        self.extensions: dict[str, Any] = {}
        self.direct_to_workers = direct_to_workers
        #: topic -> handler(event) for events the scheduler pushes (`subscribe_topic`)
        self._event_handlers: dict[str, Any] = default_handlers() if not in_task() else {}
        if not in_task():
            install_excepthook()
        from shoal.recreate_tasks import ReplayTaskClient

        ReplayTaskClient(self)  # adds recreate_task_locally / recreate_error_locally
        if asynchronous:
            self._aloop = _loop.unwrap(loop) if loop is not None else _running_loop_or_none()
            self._started: Any = None
            if self._aloop is not None:
                self._started = asyncio.ensure_future(self._start())
        else:
            cluster_loop = getattr(self.cluster, "loop", None)
            self._aloop = _loop.unwrap(loop if loop is not None else (cluster_loop or _loop.shared_loop()))
            self._started = None
            self.start()

    # ------------------------------------------------------------------ lifecycle

    def start(self, **kwargs: Any) -> None:
        if self.status == "running":
            return
        if self._asynchronous:
            if self._started is None:
                self._aloop = asyncio.get_running_loop()
                self._started = asyncio.ensure_future(self._start())
            return
        _loop.sync(self._aloop, self._start)

    def __await__(self):
        async def wait_started() -> Client:
            if self._started is None:
                self._aloop = asyncio.get_running_loop()
                self._started = asyncio.ensure_future(self._start())
            await self._started
            return self

        return wait_started().__await__()

    async def _start(self) -> None:
        if self.status == "running":
            return
        self.status = "connecting"
        address = self._address
        if address is None:
            local_cluster = provider("local_cluster")  # shoal.deploy.local, a higher layer
            cluster = await local_cluster(asynchronous=True, **self._cluster_kwargs)
            self.cluster = cluster
            self._owns_cluster = True
            self.security = cluster.security
            address = self._address = cluster.scheduler_address
        secret, source = secret_files.resolve(address, self.security)
        self._secret = secret
        info = {"role": "client", "id": self.id, "versions": get_versions()}
        # a scheduler in this process (a LocalCluster's) is reached in-process: messages
        # go over as objects; `address` stays what users see and workers use
        local = getattr(getattr(self.cluster, "scheduler", None), "local_address", None)
        try:
            comm = await connect(local or address, secret=secret, timeout=self._timeout, info=info)
        except BaseException as exc:
            self._set_closed()
            if self._owns_cluster and self.cluster is not None:
                await self.cluster.close()
            if isinstance(exc, AuthenticationError) and not isinstance(exc, ProtocolMismatchError):
                raise type(exc)(f"{exc}. {secret_files.how_to_pass(address, source)}") from None
            raise
        self.scheduler_comm = Peer(comm, None, self._on_messages, address=address)
        self.scheduler_comm.send(m.RegisterClient(self.id, get_versions()))
        if self._event_handlers:
            self.scheduler_comm.notify("subscribe_topic", topics=list(self._event_handlers))
        # workers the scheduler named were listening: a refusal means the process is gone,
        # and retrying it until the timeout would stall a gather (see `_gather_states`)
        self._pool = ConnectionPool(secret=secret, timeout=self._timeout, info=info, retry_refused=False)
        self._own(self._watch_scheduler(self.scheduler_comm))
        self.status = "running"
        try:
            self._identity = await self.scheduler_comm.request("identity")
        except Exception:  # pragma: no cover
            self._identity = {}
        await self._warn_version_mismatch()
        if self._set_as_default:
            self._register_default()

    def _register_default(self) -> None:
        add_default(self)
        self._config_ctx = dask.config.set({"scheduler": self.get, "dataframe.shuffle.method": SERVICE})

    async def _watch_scheduler(self, peer: Peer) -> None:
        await peer.run()
        if self.status == "running":
            logger.warning("lost the connection to the scheduler at %s", self._address)
            with self._lock:
                states = list(self.futures.values())
            for st in states:
                if not st.done():
                    st.cancel("scheduler-connection-lost", "the client lost its connection to the scheduler")
            self._set_closed()

    async def connect_to(self, address: str) -> Any:
        """A new connection (a `shoal.comm` comm) to `address`, a worker, with this
        client's credentials: the secret it connected with, its connect timeout, its
        identity. For shoal's own modules (actors); users do not need it."""
        return await connect(address, secret=self._secret, timeout=self._timeout, info={"role": "client", "id": self.id})

    def _own(self, coro: Any) -> asyncio.Task:
        """Run `coro` on the client's loop as a task the client owns (cancelled and
        awaited when it closes). Not public: `Client`'s public names are distributed's."""
        return self._tasks.spawn(coro)

    async def _close(self, fast: bool = False) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        self.outbox.flush()
        for ext in list(self.extensions.values()):
            close = getattr(ext, "close", None)
            if close is not None:
                closed = close()
                if inspect.isawaitable(closed):
                    await closed
        with self._lock:  # other threads release futures meanwhile (garbage collection)
            states = list(self.futures.values())
        for st in states:
            if not st.done():
                st.cancel("client-closed", "the client was closed")
        if self.scheduler_comm is not None:
            await self.scheduler_comm.close()
        if self._pool is not None:
            await self._pool.close()
        await self._tasks.close()
        if self._owns_cluster and self.cluster is not None:
            await self.cluster.close()
        self._set_closed()

    def _set_closed(self) -> None:
        """The client is closed (by `close`, or because its scheduler went away): it
        stops being the default client and dask's scheduler in the same step."""
        self.status = "closed"
        self._unregister_default()

    def _unregister_default(self) -> None:
        remove_default(self)
        if self._config_ctx is not None:
            ctx, self._config_ctx = self._config_ctx, None
            if dask.config.get("scheduler", None) == self.get:
                ctx.__exit__(None, None, None)

    def close(self, timeout: Any = no_default) -> Any:
        if self.status == "closed":
            if self.asynchronous:
                return _noop()
            return None
        if self.asynchronous:
            return self._close()
        if self._aloop.is_closed():
            self._set_closed()
            return None
        try:
            _loop.sync(self._aloop, self._close, callback_timeout=2 * self._timeout)
        finally:
            self._set_closed()
        return None

    def __enter__(self) -> Client:
        self._ctx_token = _current_client.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        token = getattr(self, "_ctx_token", None)
        if token is not None:
            try:
                _current_client.reset(token)
            except ValueError:
                raise ValueError(f"{self} was created in a different Context") from None
        self.close()

    async def __aenter__(self) -> Client:
        await self
        self._ctx_token = _current_client.set(self)
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        token = getattr(self, "_ctx_token", None)
        if token is not None:
            try:
                _current_client.reset(token)
            except ValueError:
                pass
        await self._close(fast=exc_type is not None)

    def __del__(self) -> None:
        try:
            if self.status == "running" and not self._asynchronous and not self._aloop.is_closed():
                self.close()
        except Exception:
            pass

    @classmethod
    def current(cls, allow_global: bool = True) -> Client:
        c = _current_client.get()
        if c is not None:
            return c
        if allow_global:
            return default_client()
        raise ValueError("Not running inside the `as_current` context manager")

    def as_current(self) -> Any:

        @contextlib.contextmanager
        def cm() -> Iterator[None]:
            token = _current_client.set(self)
            try:
                with dask.config.set({"scheduler": self.get, "dataframe.shuffle.method": SERVICE}):
                    yield
            finally:
                _current_client.reset(token)

        return cm()

    @property
    def loop(self) -> Any:
        """The client's event loop, as a `shoal._loop.LoopWrapper` (distributed's loop
        methods: `add_callback`, `call_later`, `asyncio_loop`, ...)."""
        loop = self._aloop
        if loop is None:
            return None
        wrapper = self.__dict__.get("_loop_wrapper")
        if wrapper is None or wrapper.asyncio_loop is not loop:
            wrapper = self.__dict__["_loop_wrapper"] = _loop.LoopWrapper(loop)
        return wrapper

    @loop.setter
    def loop(self, value: Any) -> None:
        self._aloop = _loop.unwrap(value)

    @property
    def asynchronous(self) -> bool:
        """Whether calls from this thread get awaitables (`shoal._loop.in_async_call`):
        on the client's loop, yes; from any other thread while that loop runs, no (they
        block and return values, even for an ``asynchronous=True`` client)."""
        return _loop.in_async_call(self._aloop, default=self._asynchronous)

    def sync(self, func: Any, *args: Any, asynchronous: bool | None = None, callback_timeout: Any = None, **kwargs: Any) -> Any:
        if asynchronous or (asynchronous is None and self.asynchronous):
            return func(*args, **kwargs)
        if self.status == "closed":
            raise ClosedClientError(f"{self} is closed")
        try:
            return _loop.sync(self._aloop, func, *args, callback_timeout=parse_timeout(callback_timeout), **kwargs)
        except BaseException as e:
            tb = remote_traceback(e)
            if tb is None:
                raise
            __tracebackhide__ = True  # noqa: F841 - pytest (and IPython's debugger) leave this frame out
            raise e.with_traceback(tb)  # a task's error: its frames, not the event loop's

    @property
    def scheduler(self) -> Any:
        return self.scheduler_comm

    # ------------------------------------------------------------------ plumbing

    def _call_in_loop(self, fn: Any, *args: Any) -> None:
        if _loop.in_loop_thread(self._aloop):
            fn(*args)
        else:
            self._aloop.call_soon_threadsafe(fn, *args)

    def _request(self, name: str, **kwargs: Any) -> Any:
        async def call() -> Any:
            assert self.scheduler_comm is not None
            return await self.scheduler_comm.request(name, **kwargs)

        return self.sync(call)

async def _noop() -> None:
    return None

def _running_loop_or_none() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

@atexit.register
def _close_global_clients() -> None:
    for c in registered_clients():
        try:
            if not c._asynchronous:
                c.close()
        except Exception:
            pass

__all__ = ["Client", "default_client"]
