"""`Client`: the user's connection to a shoal cluster.

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
import contextvars
import inspect
import itertools
import logging
import os
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import dask
import dask.config
from dask._task_spec import Task, TaskRef, parse_input
from dask.base import tokenize
from dask.typing import no_default
from dask.utils import funcname

from shoal import _loop, config, secret_files
from shoal._context import current_worker, in_task, provider, task_state
from shoal.actor import Actor
from shoal.client.futures import Future, FutureState
from shoal.background import BackgroundTasks
from shoal.client.graphs import warn_if_large
from shoal.client.remote_errors import install_excepthook, remote_traceback
from shoal.comm import connect
from shoal.comm.errors import AuthenticationError, CommClosedError, ProtocolMismatchError
from shoal.exceptions import ClosedClientError, WorkerStartTimeoutError
from shoal.protocol import messages as m
from shoal.protocol.families import Families
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.rpc import ConnectionPool, Peer
from shoal.shuffle.method import SERVICE
from shoal.security import secret_of
from shoal.status import StatusAttribute
from shoal.utils import parse_timeout, typename
from shoal.versions import get_versions

logger = logging.getLogger("shoal.client")
#: what nannies report of their workers' deaths (`shoal.log_terminal.handle_worker_alert`)
WORKER_ALERT_TOPICS = ("worker-restart-memory", "worker-restart")

_global_clients: weakref.WeakValueDictionary[int, Client] = weakref.WeakValueDictionary()
_global_client_index = itertools.count()
_current_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar("shoal_client", default=None)

_NO_CLIENT_MSG = (
    "No clients found\n"
    "Start a client and point it to the scheduler address\n"
    "  from distributed import Client\n"
    "  client = Client('ip-addr-of-scheduler:8786')\n"
)


def default_client(c: Client | None = None) -> Client:
    """`c` if given, else the most recently created client that is still open."""
    if c is not None:
        return c
    for i in sorted(_global_clients, reverse=True):
        client = _global_clients.get(i)
        if client is not None and client.status not in ("closing", "closed"):
            return client
    raise ValueError(_NO_CLIENT_MSG)


def _walk_futures(obj: Any, out: list) -> Any:
    """Replace `Future`s inside containers by plain `TaskRef`s; collect them.

    Lists, tuples, sets, frozensets and dicts are walked at any depth, their subclasses
    too (rebuilt as the base type, which is what the task receives, as in distributed);
    a namedtuple keeps its type."""
    t = type(obj)
    if t is Future or t is Actor:
        out.append(obj)
        return TaskRef(obj.key)
    if t in (list, tuple, set):
        return t([_walk_futures(x, out) for x in obj])
    if t is dict:
        return {k: _walk_futures(v, out) for k, v in obj.items()}
    if t in _SIMPLE:
        return obj
    if isinstance(obj, (Future, Actor)):
        out.append(obj)
        return TaskRef(obj.key)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return t(*(_walk_futures(x, out) for x in obj))
    if isinstance(obj, frozenset):  # dask resolves references only in list/tuple/set/dict
        before = len(out)
        items = [_walk_futures(x, out) for x in obj]
        return Task(None, frozenset, parse_input(items)) if len(out) > before else obj
    for base in (list, tuple, set):
        if isinstance(obj, base):
            return base(_walk_futures(x, out) for x in obj)
    if isinstance(obj, dict):
        return {k: _walk_futures(v, out) for k, v in obj.items()}
    return obj


_SIMPLE = (int, float, str, bytes, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)


def _has_future(obj: Any) -> bool:
    t = type(obj)
    if t in _SIMPLE:
        return False
    if t is Future or t is Actor:
        return True
    if t in _CONTAINERS:
        return any(_has_future(x) for x in obj)
    if t is dict:
        return any(_has_future(v) for v in obj.values())
    if isinstance(obj, (Future, Actor)):
        return True
    if isinstance(obj, _CONTAINERS):
        return any(_has_future(x) for x in obj)
    if isinstance(obj, dict):
        return any(_has_future(v) for v in obj.values())
    return False


def _map_structure(obj: Any, leaf: Any) -> Any:
    """Rebuild nested list/tuple/set/dict/namedtuple `obj` with Futures replaced by `leaf(f)`."""
    t = type(obj)
    if isinstance(obj, Future):
        return leaf(obj)
    if t in (list, set, frozenset):
        return t(_map_structure(x, leaf) for x in obj)
    if t is tuple:
        return tuple(_map_structure(x, leaf) for x in obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return t(*(_map_structure(x, leaf) for x in obj))
    if t is dict:
        return {k: _map_structure(v, leaf) for k, v in obj.items()}
    return obj


def _collect(obj: Any, out: list) -> None:
    if isinstance(obj, Future):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            _collect(x, out)
    elif type(obj) is dict:
        for v in obj.values():
            _collect(v, out)


class Client:
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
        self._outbox: collections.deque = collections.deque()
        self._flush_pending = False
        self._func_cache: dict[int, tuple[Any, Pickled]] = {}
        self._priority_counter = itertools.count()
        self._asynchronous = asynchronous
        #: what this client sends and accepts (`shoal.protocol.families`)
        self._families = Families(serializers, deserializers)
        self._set_as_default = set_as_default
        self._config_ctx: Any = None
        self._identity: dict = {}
        self.scheduler_comm: Peer | None = None
        self._pool: ConnectionPool | None = None
        #: background tasks the client owns (cancelled and awaited on close)
        self._tasks = BackgroundTasks("the client")
        self.direct_to_workers = direct_to_workers
        #: topic -> handler(event) for events the scheduler pushes (`subscribe_topic`);
        #: what tasks `shoal.print`/`shoal.warn` reaches every client (not task-side ones)
        self._event_handlers: dict[str, Any] = {}
        if not in_task():
            from shoal.diagnostics.remote_print import handle_print, handle_warn

            install_excepthook()
            self._event_handlers.update(print=handle_print, warn=handle_warn)
            from shoal.log_terminal import handle_worker_alert

            for topic in WORKER_ALERT_TOPICS:
                self._event_handlers[topic] = handle_worker_alert
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
        _global_clients[next(_global_client_index)] = self
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

    def _own(self, coro: Any) -> asyncio.Task:
        """Run `coro` on the client's loop as a task the client owns (cancelled and
        awaited when it closes). Not public: `Client`'s public names are distributed's."""
        return self._tasks.spawn(coro)

    async def _close(self, fast: bool = False) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        self._flush()
        channels = self.__dict__.get("_actor_channels")
        if channels is not None:
            await channels.close()
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
        for i, c in list(_global_clients.items()):
            if c is self:
                del _global_clients[i]
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
        import contextlib

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

    @property
    def dashboard_link(self) -> str:
        link = getattr(self.cluster, "dashboard_link", "") if self.cluster is not None else ""
        if link:
            return link
        port = (self._identity.get("services") or {}).get("dashboard")
        if not port or not self._address:
            return ""
        from shoal.comm.addressing import parse_address
        from shoal.utils import format_dashboard_link

        scheme, loc = parse_address(self._address)
        host = "127.0.0.1" if scheme == "inproc" else loc.rsplit(":", 1)[0].strip("[]")
        return format_dashboard_link(host, port)

    def __repr__(self) -> str:
        """``<Client: 'tcp://…' processes=2 threads=4, memory=8.00 GiB>`` (the scheduler's
        current totals, asked for with a short timeout when called off the loop), or
        ``<Client: 'tcp://…' closed>`` once closing or closed."""
        addr = self._address
        if self.status in ("newly-created", "connecting") and not addr:
            return "<Client: No scheduler connected>"
        if self.status in ("closing", "closed"):
            return f"<Client: {addr!r} {self.status}>" if addr else f"<Client: {self.status}>"
        info = self._fresh_identity()
        if info.get("workers") is not None or "n_workers" in info:
            from shoal.utils import format_bytes

            n = info.get("n_workers", len(info.get("workers") or ()))
            threads = info.get("total_threads", 0)
            mem = format_bytes(info.get("total_memory", 0))
            return f"<Client: {addr!r} processes={n} threads={threads}, memory={mem}>"
        return f"<Client: scheduler={addr!r}>"

    def _fresh_identity(self) -> dict:
        """The scheduler's identity now (bounded wait), else the last one seen."""
        if self.status == "running" and self.scheduler_comm is not None and not self.asynchronous:

            async def fetch() -> dict:
                assert self.scheduler_comm is not None
                return await self.scheduler_comm.request("identity", n_workers=-1)

            try:
                self._identity = _loop.sync(self._aloop, fetch, callback_timeout=2)
            except Exception:  # noqa: BLE001 - a repr must not fail: show what is cached
                pass
        return self._identity or {}

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import client_html

        return client_html(self)

    # ------------------------------------------------------------------ plumbing

    def _call_in_loop(self, fn: Any, *args: Any) -> None:
        if _loop.in_loop_thread(self._aloop):
            fn(*args)
        else:
            self._aloop.call_soon_threadsafe(fn, *args)

    def _send(self, msg: m.Message) -> None:
        """Queue `msg` for the scheduler, from any thread, preserving order."""
        if self.status in ("closing", "closed"):
            if type(msg) is m.ReleaseKeys:
                return
            raise ClosedClientError(f"{self} is closed")
        self._outbox.append(msg)
        if not self._flush_pending:
            self._flush_pending = True
            if _loop.in_loop_thread(self._aloop):
                self._aloop.call_soon(self._flush)
            else:
                try:
                    self._aloop.call_soon_threadsafe(self._flush)
                except RuntimeError:  # loop closed
                    self._flush_pending = False

    def _flush(self) -> None:
        self._flush_pending = False
        outbox = self._outbox
        peer = self.scheduler_comm
        if peer is None or peer.closed:
            if self._started is not None or self.status == "running":
                outbox.clear()
            return
        while outbox:
            msg = outbox.popleft()
            try:
                peer.send(msg)
                if type(msg) is m.UpdateGraph:
                    # one packet per graph batch: the scheduler decodes and ingests it
                    # before the next arrives, instead of holding the whole graph decoded
                    peer.comm.flush()
            except CommClosedError:
                outbox.clear()
                return

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
            self._send(m.ReleaseKeys((key,)))

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
                    exc = msg.exception if self._families.accept_errors else _error_from_text(msg.text)
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

    def _pickle_func(self, func: Any) -> Pickled:
        hit = self._func_cache.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        try:
            p = dumps(func)
        except Exception as e:
            raise TypeError(f"Could not serialize the function {funcname(func)!r}: {e}") from e
        if len(self._func_cache) > 1000:
            self._func_cache.clear()
        self._func_cache[id(func)] = (func, p)
        return p

    def _pickle_args(self, key: Any, args: tuple, kwargs: dict) -> Pickled:
        try:
            p = dumps((args, kwargs))
        except Exception as e:
            for i, a in enumerate(args):
                try:
                    dumps(a)
                except Exception:
                    raise TypeError(
                        f"Could not serialize argument {i} ({typename(type(a))}) of task {key!r}: {e}"
                    ) from e
            for k, v in kwargs.items():
                try:
                    dumps(v)
                except Exception:
                    raise TypeError(
                        f"Could not serialize keyword argument {k!r} ({typename(type(v))}) of task {key!r}: {e}"
                    ) from e
            raise TypeError(f"Could not serialize the arguments of task {key!r}: {e}") from e
        return self._families.check_send(p, f"the arguments of task {key!r}")


    @staticmethod
    def _annotations(workers: Any, allow_other_workers: Any, resources: Any, retries: Any) -> dict | None:
        ann: dict = {}
        if workers is not None:
            if isinstance(workers, (str, int, float)):
                workers = [workers]
            ann["workers"] = list(workers)
            if allow_other_workers:
                ann["allow_other_workers"] = True
        if resources:
            ann["resources"] = dict(resources)
        if retries:
            ann["retries"] = int(retries)
        global_ann = dask.get_annotations()
        for k in ("workers", "allow_other_workers", "resources", "retries"):
            if k in global_ann and k not in ann:
                ann[k] = global_ann[k]
        return ann or None

    def _check_running(self) -> None:
        if self.status in ("closing", "closed"):
            raise ClosedClientError(f"{self} is closed")

    # ------------------------------------------------------------------ submit / map

    def submit(
        self,
        func: Any,
        *args: Any,
        key: Any = None,
        workers: Any = None,
        resources: Any = None,
        retries: Any = None,
        priority: int = 0,
        fifo_timeout: Any = "100 ms",
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        **kwargs: Any,
    ) -> Future:
        """Run `func(*args, **kwargs)` on the cluster; return a `Future` for its result."""
        if not callable(func):
            raise TypeError("First input to submit must be a callable function")
        if allow_other_workers not in (True, False, None):
            raise TypeError("allow_other_workers= must be True, False, or None")
        if allow_other_workers and workers is None:
            raise ValueError("Only use allow_other_workers= if using workers=")
        self._check_running()
        actor = bool(actor or actors)
        if key is None:
            if pure and not actor:
                key = f"{funcname(func)}-{tokenize(func, kwargs, *args)}"
            else:
                key = f"{funcname(func)}-{uuid.uuid4()}"
        else:
            from dask.core import validate_key

            validate_key(key)
        if key in self.futures:
            return Future(key, self)
        deps: list[Future] = []
        if _has_future(args) or _has_future(kwargs):
            args = _walk_futures(args, deps)
            kwargs = _walk_futures(kwargs, deps)
            self._check_own(deps)
        fp = self._pickle_func(func)
        spec = self._pickle_args(key, args, kwargs)
        warn_if_large(spec.nbytes, stacklevel=2)
        ann = self._annotations(workers, allow_other_workers, resources, retries)
        if actor:
            ann = {**(ann or {}), "actor": True}
        prio = (-priority, next(self._priority_counter))
        dep_keys = tuple({f.key: None for f in deps})
        future = Future(key, self)
        self._send(m.UpdateGraph(((key, 0, spec, dep_keys, prio, ann),), (fp,), (key,)))
        return future

    def _check_own(self, futures: list[Future]) -> None:
        for f in futures:
            if type(f) is Future and f.client is not self:
                raise ValueError(
                    f"Inputs contain futures that were created by another client: {f.key!r}"
                )

    def map(
        self,
        func: Any,
        *iterables: Any,
        key: Any = None,
        workers: Any = None,
        retries: Any = None,
        resources: Any = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        fifo_timeout: Any = "100 ms",
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """`submit(func, *args)` for each tuple of arguments drawn from `iterables`."""
        if not callable(func):
            raise TypeError("First input to map must be a callable function")
        import queue as queue_mod

        if any(isinstance(it, (Iterator, queue_mod.Queue)) for it in iterables):
            raise TypeError(
                "Dask no longer supports mapping over Iterators or Queues.Consider using a normal for loop and Client.submit"
            )
        if workers is not None and not isinstance(workers, (list, set, str, int, float)):
            raise TypeError("Workers must be a list or set of workers or None")
        if allow_other_workers and workers is None:
            raise ValueError("Only use allow_other_workers= if using workers=")
        self._check_running()
        actor = bool(actor or actors)
        pure = pure and not actor
        arg_tuples = list(zip(*iterables))
        if not arg_tuples:
            return []
        if batch_size and batch_size < len(arg_tuples):
            out: list[Future] = []
            keys_list = key if isinstance(key, list) else None
            for start in range(0, len(arg_tuples), batch_size):
                chunk = arg_tuples[start : start + batch_size]
                sub_key = keys_list[start : start + batch_size] if keys_list else key
                out.extend(
                    self.map(func, *zip(*chunk), key=sub_key, workers=workers, retries=retries,
                             resources=resources, priority=priority, allow_other_workers=allow_other_workers,
                             actor=actor, pure=pure, **kwargs)
                )  # fmt: skip
            return out
        if isinstance(key, list):
            from dask.core import validate_key

            keys = key
            for k in keys:
                validate_key(k)  # a key dask rejects fails here, at the call
        else:
            prefix = key or funcname(func)
            if pure:
                token = tokenize(func, kwargs)
                keys = [f"{prefix}-{tokenize(token, args)}" for args in arg_tuples]
            else:
                uid = uuid.uuid4()
                keys = [f"{prefix}-{uid}-{i}" for i in range(len(arg_tuples))]
        fp = self._pickle_func(func)
        ann = self._annotations(workers, allow_other_workers, resources, retries)
        if actor:
            ann = {**(ann or {}), "actor": True}
        kw_has_futures = _has_future(kwargs)
        tasks = []
        futures = []
        base = next(self._priority_counter)
        for i, (k, args) in enumerate(zip(keys, arg_tuples)):
            if k in self.futures:
                futures.append(Future(k, self))
                continue
            kw = kwargs
            deps: list[Future] = []
            if kw_has_futures or _has_future(args):
                args = _walk_futures(args, deps)
                kw = _walk_futures(kwargs, deps)
                self._check_own(deps)
            spec = self._pickle_args(k, args, kw)
            tasks.append((k, 0, spec, tuple({f.key: None for f in deps}), (-priority, base, i), ann))
            futures.append(Future(k, self))
        for _ in range(len(arg_tuples)):
            next(self._priority_counter)
        if tasks:
            warn_if_large(sum(t[2].nbytes for t in tasks), stacklevel=2)
            self._send(m.UpdateGraph(tuple(tasks), (fp,), tuple(t[0] for t in tasks)))
        return futures

    # ------------------------------------------------------------------ results

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
            value = self._families.load(p)
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
        local = self._in_process_worker(worker) if self._families.accept_any else None
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
            leaves: list[Future] = []
            _collect(futures, leaves)
            for f in leaves:  # the scheduler went away: say why the futures were cancelled
                if f._state is not None and f._state.status in ("error", "cancelled"):
                    f._state.raise_if_failed()
        return self.sync(self._gather, futures, errors=errors, asynchronous=asynchronous)

    async def _gather(self, futures: Any, errors: str = "raise") -> Any:
        leaves: list[Future] = []
        _collect(futures, leaves)
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
            return _map_structure(futures, lambda f: values.get(f.key))
        return _map_structure(futures, lambda f: values[f.key])

    # ------------------------------------------------------------------ scatter

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
        t = type(data)
        is_namedtuple = isinstance(data, tuple) and hasattr(data, "_fields")
        if t is dict:
            keys = list(data)
            values = list(data.values())
        else:
            values = list(data) if t in (list, tuple, set, frozenset, range) or is_namedtuple else [data]
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
            p = self._families.check_send(dumps(value), f"scattered data {key!r}")
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
        self._send(m.UpdateData(who_has, nbytes, types))
        futures = {}
        for key in items:
            f = Future(key, self)
            assert f._state is not None
            if not f._state.done():
                f._state.finish(types[key], who_has[key], None)
            futures[key] = f
        out = [futures[k] for k in keys]
        if t is dict:
            return futures
        if t in (list, range):
            return out
        if is_namedtuple:
            return t(*out)
        if t in (tuple, set, frozenset):
            return t(out)
        return out[0]

    def _scatter_key(self, x: Any, hash: bool) -> Any:
        if hash:
            return f"{type(x).__name__}-{tokenize(x)}"
        return f"{type(x).__name__}-{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ cancel / retry / release

    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False, reason: str | None = None, msg: str | None = None) -> Any:
        """Cancel these futures and everything that depends on them."""
        return self.sync(self._cancel, futures, force=force, reason=reason, msg=msg, asynchronous=asynchronous)

    async def _cancel(self, futures: Any, force: bool = False, reason: str | None = None, msg: str | None = None) -> None:
        from shoal.client.helpers import futures_of

        keys = [f.key for f in futures_of(futures)]
        with self._lock:
            for k in keys:
                st = self.futures.pop(k, None)
                self.refcount.pop(k, None)
                if st is not None:
                    st.cancel(reason, msg)
        self._send(m.CancelKeys(tuple(keys), force, reason, msg))

    def retry(self, futures: Any, asynchronous: Any = None) -> Any:
        return self.sync(self._retry, futures, asynchronous=asynchronous)

    async def _retry(self, futures: Any) -> None:
        from shoal.client.helpers import futures_of

        keys = tuple(f.key for f in futures_of(futures))
        for key in keys:  # pending again right away, so result() waits for the new run
            st = self.futures.get(key)
            if st is not None and st.status == "error":
                st.retry()
        self._send(m.RetryKeys(keys))

    # ------------------------------------------------------------------ introspection

    def _request(self, name: str, **kwargs: Any) -> Any:
        async def call() -> Any:
            assert self.scheduler_comm is not None
            return await self.scheduler_comm.request(name, **kwargs)

        return self.sync(call)

    def scheduler_info(self, n_workers: int = -1, **kwargs: Any) -> Any:
        from shoal.objects import SchedulerInfo

        if self.asynchronous:
            info = dict(self._identity)
            info["workers"] = {}
            return SchedulerInfo(info)

        async def call() -> Any:
            assert self.scheduler_comm is not None
            self._identity = await self.scheduler_comm.request("identity", n_workers=n_workers)
            return SchedulerInfo(self._identity)

        return self.sync(call)

    def nthreads(self, workers: Any = None, **kwargs: Any) -> Any:
        if isinstance(workers, (str, int, float)):
            workers = [workers]
        return self._request("nthreads", workers=workers)

    ncores = nthreads

    def who_has(self, futures: Any = None, **kwargs: Any) -> Any:
        from shoal.client.helpers import futures_of
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

    # ------------------------------------------------------------------ diagnostics

    async def _task_stream(
        self, start: Any = None, stop: Any = None, count: int | None = None, since: dict | None = None
    ) -> dict:
        """`{"counts": {worker: records so far}, "records": [...], "dropped": {worker: n}}`
        from the scheduler."""
        from shoal.diagnostics.task_stream import normalize_records, parse_time

        assert self.scheduler_comm is not None
        self._flush()
        reply = await self.scheduler_comm.request(
            "get_task_stream", start=parse_time(start), stop=parse_time(stop), count=count, since=since
        )
        return {
            "counts": dict(reply["counts"]), "records": normalize_records(reply["records"]),
            "dropped": dict(reply.get("dropped") or {}),
        }  # fmt: skip

    def get_task_stream(
        self,
        start: Any = None,
        stop: Any = None,
        count: int | None = None,
        plot: Any = False,
        filename: str = "task-stream.html",
        bokeh_resources: Any = None,
    ) -> Any:
        """Records of the tasks the workers ran: `key, worker, thread, status, nbytes, type,
        startstops` (see `shoal.diagnostics.task_stream`). `start`/`stop` are epoch seconds
        or durations before now (``"60s"``); `count` keeps the newest N. `plot=True` also
        returns a figure (an HTML timeline); `plot="save"` writes it to `filename` too.
        Warns when workers' ring buffers (`shoal.worker.task-stream-length`) no longer held
        some of the requested records."""
        from shoal.diagnostics.task_stream import warn_if_dropped

        def finish(reply: dict) -> Any:
            warn_if_dropped(reply["dropped"], stacklevel=3)  # in the caller's thread, at its line
            return _plot_task_stream(reply["records"], plot, filename)

        if self.asynchronous:

            async def call() -> Any:
                return finish(await self._task_stream(start, stop, count))

            return call()
        return finish(self.sync(self._task_stream, start, stop, count))

    async def _profile(
        self, key: Any = None, start: Any = None, stop: Any = None, workers: Any = None, merge_workers: bool = True,
        server: bool = False, scheduler: bool = False,
    ) -> dict:
        from shoal.diagnostics.task_stream import parse_time

        assert self.scheduler_comm is not None
        if isinstance(workers, str):
            workers = [workers]
        return await self.scheduler_comm.request(
            "profile", key=key, start=parse_time(start), stop=parse_time(stop),
            workers=None if workers is None else list(workers), merge_workers=merge_workers, server=server,
            scheduler=scheduler,
        )  # fmt: skip

    def profile(
        self,
        key: Any = None,
        start: Any = None,
        stop: Any = None,
        workers: Any = None,
        merge_workers: bool = True,
        plot: Any = False,
        filename: str | None = None,
        server: bool = False,
        scheduler: bool = False,
    ) -> Any:
        """The statistical profile of where the workers' task threads spent their time:
        a call tree ``{"count", "children", "description", "identifier"}`` (see
        `shoal.profile`), merged over `workers` (all by default; ``merge_workers=False``
        gives ``{worker: tree}``). `key` keeps tasks of that key prefix; `start`/`stop`
        are epoch seconds, datetimes or durations before now (``"60s"``), matched to whole
        cycles (`shoal.worker.profile.cycle`, 1 s) that overlap the window. `server=True`
        profiles the workers' event loops instead, `scheduler=True` the scheduler's.
        With `plot` (or a `filename`, where the page is written) returns ``(tree, figure)``,
        the figure an offline HTML icicle graph."""

        async def call() -> Any:
            state = await self._profile(key, start, stop, workers, merge_workers, server, scheduler)
            name = filename
            if not plot and not name:
                return state
            from shoal.diagnostics.profile_plot import ProfileFigure

            tree = state
            if not merge_workers and not scheduler:
                from shoal.profile import merge

                tree = merge(*state.values())
            figure = ProfileFigure(tree)
            if plot == "save" and not name:
                name = "dask-profile.html"
            if name:
                figure.save(name)
            return state, figure

        return self.sync(call)

    def log_event(self, topic: Any, msg: Any) -> Any:
        """Log `msg` (msgpack-serializable data) on the scheduler under `topic` (a name or
        a list of names); subscribers of the topic receive it."""
        from shoal.protocol.events import check_event_message

        check_event_message(msg)
        topic = topic if isinstance(topic, str) else [str(t) for t in topic]
        return self._request("log_event", topic=topic, msg=msg)

    def get_events(self, topic: str | None = None) -> Any:
        """Events of `topic` as a tuple of ``(timestamp, msg)``; with no topic, a dict of
        every topic's events."""

        async def call() -> Any:
            assert self.scheduler_comm is not None
            events = await self.scheduler_comm.request("get_events", topic=topic)
            if topic is not None:
                return tuple(tuple(e) for e in events)
            return {t: tuple(tuple(e) for e in evs) for t, evs in events.items()}

        return self.sync(call)

    def subscribe_topic(self, topic: str, handler: Any) -> None:
        """Call `handler((timestamp, msg))` (a function or a coroutine function) on this
        client's event loop for every event logged on `topic` from now on. Subscribing
        again replaces the handler."""
        self._event_handlers[topic] = handler
        self._call_in_loop(self._notify_scheduler, "subscribe_topic", [topic])

    def unsubscribe_topic(self, topic: str) -> None:
        if topic not in self._event_handlers:
            raise ValueError(f"No event handler known for topic {topic}.")
        del self._event_handlers[topic]
        self._call_in_loop(self._notify_scheduler, "unsubscribe_topic", [topic])

    def _notify_scheduler(self, name: str, topics: list) -> None:
        self._flush()
        peer = self.scheduler_comm
        if peer is not None and not peer.closed and self.status == "running":
            peer.notify(name, topics=topics)

    def _handle_event(self, msg: m.TopicEvent) -> None:
        handler = self._event_handlers.get(msg.topic)
        if handler is None:
            return
        event = (msg.time, msg.msg)
        try:
            if inspect.iscoroutinefunction(handler):
                self._own(_log_failure(handler(event), msg.topic))
            else:
                handler(event)
        except Exception:
            logger.exception("event handler for topic %r failed", msg.topic)

    def run_on_scheduler(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` on the scheduler (it may take `dask_scheduler=`)."""
        wait = kwargs.pop("wait", True)

        async def call() -> Any:
            assert self.scheduler_comm is not None
            value = await self.scheduler_comm.request(
                "run_on_scheduler", function=dumps(function), args=dumps((args, kwargs)), wait=wait
            )
            return self._families.load(value)

        return self.sync(call)

    def run(
        self,
        function: Any,
        *args: Any,
        workers: Any = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: str = "raise",
        **kwargs: Any,
    ) -> Any:
        """Run `function` on every worker (outside task scheduling): `{address: result}`."""
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore'; got {on_error!r}")
        if isinstance(workers, (str, int, float)):
            workers = [workers]

        async def call() -> Any:
            assert self.scheduler_comm is not None
            replies = await self.scheduler_comm.request(
                "broadcast",
                name="run",
                kwargs={"function": dumps(function), "args": dumps((args, kwargs)), "wait": wait},
                workers=workers,
            )
            if not wait:
                return None
            out = {}
            for addr, (ok, value) in replies.items():
                if not isinstance(value, Pickled):
                    obj = value
                elif ok:
                    obj = self._families.load(value)
                elif self._families.accept_errors:
                    obj = loads(value)
                else:  # an error this client does not unpickle
                    obj = RuntimeError(f"the function failed on {addr}")
                if ok:
                    out[addr] = obj
                elif on_error == "raise":
                    raise obj if isinstance(obj, BaseException) else RuntimeError(str(obj))
                elif on_error == "return":
                    out[addr] = obj
            return out

        return self.sync(call)

    def wait_for_workers(self, n_workers: int, timeout: Any = None) -> Any:
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"`n_workers` must be a positive integer. Instead got {n_workers}.")

        async def call() -> None:
            assert self.scheduler_comm is not None
            t = parse_timeout(timeout)
            loop = asyncio.get_running_loop()
            deadline = None if t is None else loop.time() + t
            while True:
                info = await self.scheduler_comm.request("identity", n_workers=0)
                self._identity = info
                if info["n_workers"] >= n_workers:
                    return
                if deadline is not None and loop.time() >= deadline:
                    raise WorkerStartTimeoutError(info["n_workers"], n_workers, t)
                await asyncio.sleep(0.05)  # poll the scheduler until enough workers joined

        return self.sync(call)

    # ------------------------------------------------------------------ cluster management

    def restart(self, timeout: Any = no_default, wait_for_workers: bool = True) -> Any:
        """Restart every worker through its nanny (workers without one are shut down),
        forget all tasks and cancel every client's futures (reason `scheduler-restart`).
        With `wait_for_workers`, return once the restarted workers are back; `TimeoutError`
        after `timeout` (default 4x the connect timeout)."""
        t = 4 * self._timeout if timeout is no_default else parse_timeout(timeout)

        async def call() -> None:
            assert self.scheduler_comm is not None
            self._flush()
            try:
                await self.scheduler_comm.request("restart", timeout=t, wait_for_workers=wait_for_workers)
            finally:
                self._forget_restarted(None)

        return self.sync(call)

    def restart_workers(self, workers: list[str], timeout: Any = no_default, raise_for_error: bool = True) -> Any:
        """Restart these workers (addresses or names) through their nannies; their tasks
        are recomputed elsewhere as for any lost worker. Returns `{worker: "OK" | "removed"
        | "timed out"}` keyed as given; `raise_for_error` raises `TimeoutError` instead."""
        t = 4 * self._timeout if timeout is no_default else parse_timeout(timeout)

        async def call() -> Any:
            assert self.scheduler_comm is not None
            info = (await self.scheduler_comm.request("identity"))["workers"]
            for addr, meta in info.items():
                if (addr in workers or meta["name"] in workers) and meta["nanny"] is None:
                    raise ValueError(
                        f"Restarting workers requires a nanny to be used. Worker {addr} has type {meta['type']}."
                    )
            by_name = {meta["name"]: addr for addr, meta in info.items()}
            addrs = [by_name.get(w, w) for w in workers]
            out = await self.scheduler_comm.request(
                "restart_workers", workers=addrs, timeout=t, on_error="raise" if raise_for_error else "return"
            )
            return {w: out.get(a, "removed") for w, a in zip(workers, addrs)}

        return self.sync(call)

    def retire_workers(self, workers: list[str] | None = None, close_workers: bool = True, **kwargs: Any) -> Any:
        """Retire workers gracefully: every result only they hold is first copied to a
        remaining worker, then they are closed (through their nanny, which then does not
        restart them). `workers` are addresses or names; with none, `names=` or `n=` idle
        workers (all idle ones by default). `remove=False` with `close_workers=False` only
        moves the data. Returns `{address: worker info}` of the workers retired; a worker
        whose data cannot go anywhere (the last one) is kept and left out."""
        if isinstance(workers, (str, int)):
            workers = [workers]
        unknown = set(kwargs) - {"names", "n", "remove", "timeout"}
        if unknown:
            raise TypeError(f"retire_workers() got unexpected keyword arguments {sorted(unknown)}")
        if "timeout" in kwargs:
            kwargs["timeout"] = parse_timeout(kwargs["timeout"])
        return self._request("retire_workers", workers=workers, close_workers=close_workers, **kwargs)

    def get_scheduler_logs(self, n: int | None = None) -> Any:
        """The scheduler's recent log lines, newest first: `[(level, line), ...]`
        (at most `shoal.admin.log-length`)."""

        async def call() -> list:
            assert self.scheduler_comm is not None
            return [tuple(x) for x in await self.scheduler_comm.request("get_scheduler_logs", n=n)]

        return self.sync(call)

    def get_worker_logs(self, n: int | None = None, workers: Any = None, nanny: bool = False) -> Any:
        """`{worker address: [(level, line), ...]}`, newest first, of every worker (or those
        in `workers`); with `nanny=True` the logs of their nannies."""
        if isinstance(workers, (str, int)):
            workers = [workers]

        async def call() -> dict:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("get_worker_logs", n=n, workers=workers, nanny=nanny)
            return {a: [tuple(x) for x in lines] for a, lines in reply.items()}

        return self.sync(call)

    def shutdown(self) -> Any:
        """Close the cluster: the scheduler and its workers (`cluster.close()` when the
        client knows its cluster), then this client."""

        async def call() -> None:
            if self.cluster is not None:
                closed = self.cluster.close()
                if inspect.isawaitable(closed):
                    await closed
            elif self.scheduler_comm is not None and not self.scheduler_comm.closed:
                try:
                    await self.scheduler_comm.request("terminate")
                except (CommClosedError, OSError):
                    pass
            await self._close()

        if self.asynchronous:
            return call()
        if self.cluster is not None and not getattr(self.cluster, "asynchronous", False):
            self.cluster.close()  # a blocking cluster closes from this thread
            return self.close()
        return self.sync(call)

    def write_scheduler_file(self, scheduler_file: str) -> None:
        """Write the scheduler's information (and this client's secret, mode 0600) to
        `scheduler_file`, for `Client(scheduler_file=...)` and `shoal worker --scheduler-file`."""
        from shoal.scheduler_file import write_scheduler_file

        if self.scheduler_file is not None:
            raise ValueError("Scheduler file already set")
        self.scheduler_file = scheduler_file
        info = dict(self.scheduler_info())
        write_scheduler_file(scheduler_file, info, self._secret)

    # ------------------------------------------------------------------ published datasets

    def publish_dataset(self, *args: Any, name: Any = None, override: bool = False, **kwargs: Any) -> Any:
        """Publish named objects on the scheduler for other clients: ``(obj, name="x")``
        (several positional objects: a tuple), ``({"x": obj})`` or ``(x=obj)``. Futures
        inside stay alive until unpublished; an existing name raises `KeyError` unless
        `override`. Collections are stored as given (persist them first)."""
        from shoal import datasets

        return self.sync(datasets.publish, self, args, name, override, kwargs)

    def unpublish_dataset(self, name: Any, **kwargs: Any) -> Any:
        """Remove a published dataset (or a list of them); unknown names are ignored."""
        from shoal import datasets

        return self.sync(datasets.unpublish, self, name)

    def list_datasets(self, **kwargs: Any) -> Any:
        """The names of the published datasets, sorted by `str`."""
        from shoal import datasets

        return self.sync(datasets.list_names, self)

    def get_dataset(self, name: Any, default: Any = no_default, **kwargs: Any) -> Any:
        """The published object `name` (a list of names: a list of objects), its futures
        bound to this client; `default` if missing, else `KeyError`."""
        from shoal import datasets

        return self.sync(datasets.get, self, name, default)

    @property
    def datasets(self) -> Any:
        """The published datasets as a `MutableMapping` (see `shoal.datasets.Datasets`)."""
        from shoal.datasets import Datasets

        mapping = self.__dict__.get("_datasets")
        if mapping is None:
            mapping = self.__dict__["_datasets"] = Datasets(self)
        return mapping

    # ------------------------------------------------------------------ executor, data placement, admin

    def get_executor(self, **kwargs: Any) -> Any:
        """A `concurrent.futures.Executor` submitting to this client (`shoal.client.executor`)."""
        from shoal.client.executor import ClientExecutor

        return ClientExecutor(self, **kwargs)

    def _keys_of(self, futures: Any) -> list:
        from shoal.client.helpers import futures_of

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

    def call_stack(self, futures: Any = None, keys: Any = None) -> Any:
        """`{worker: {key: [formatted frames]}}` for the tasks executing right now (only
        those of `futures` / `keys` when given)."""
        wanted = None
        if futures is not None or keys is not None:
            wanted = (self._keys_of(futures) if futures is not None else []) + list(keys or ())

        async def call() -> dict:
            assert self.scheduler_comm is not None
            reply = await self.scheduler_comm.request("call_stack", keys=wanted)
            return {w: {k: list(frames) for k, frames in stacks.items()} for w, stacks in reply.items()}

        return self.sync(call)

    def set_metadata(self, key: Any, value: Any) -> Any:
        """Store small (msgpack) `value` on the scheduler under `key`; a list of keys is a
        nested path: ``set_metadata(["x", "y"], 1)`` makes ``get_metadata("x") == {"y": 1}``."""
        keys = list(key) if isinstance(key, list) else [key]
        return self._request("set_metadata", keys=keys, value=value)

    def get_metadata(self, keys: Any, default: Any = no_default) -> Any:
        """The metadata stored at `keys` (a key or a nested path); `default` when missing,
        else `KeyError`."""
        path = list(keys) if isinstance(keys, list) else [keys]
        if default is no_default:
            return self._request("get_metadata", keys=path)
        return self._request("get_metadata", keys=path, has_default=True, default=default)

    async def _warn_version_mismatch(self) -> None:
        """Warn (once, when connecting) if key packages differ across the cluster."""
        from shoal.versions import format_mismatches, mismatches

        assert self.scheduler_comm is not None
        try:
            theirs = await self.scheduler_comm.request("key_versions")
        except Exception:  # noqa: BLE001 - an older scheduler without the handler: nothing to compare
            return
        found = mismatches(get_versions(), theirs["scheduler"], theirs["workers"])
        if found:
            import warnings

            warnings.warn(format_mismatches(found), UserWarning, stacklevel=2)

    def get_versions(self, check: bool = False, packages: Any = None) -> Any:
        """`{"scheduler": ..., "workers": {address: ...}, "client": ...}`, each
        `{"host": {...}, "packages": {...}}`; with `check`, `ValueError` (and a table of
        the differences) when key packages (or `packages`) differ across the cluster."""
        from shoal.versions import flat, format_mismatches, mismatches, versions_report

        wanted = list(packages or ())

        async def call() -> dict:
            assert self.scheduler_comm is not None
            result = dict(await self.scheduler_comm.request("versions", packages=wanted))
            result["workers"] = dict(result["workers"])
            result["client"] = versions_report(wanted)
            if check:
                workers = {a: flat(r) for a, r in result["workers"].items()}
                found = mismatches(flat(result["client"]), flat(result["scheduler"]), workers, wanted)
                if found:
                    raise ValueError(format_mismatches(found))
            return result

        return self.sync(call)

    def story(self, *keys_or_stimuli: Any, on_error: str = "raise") -> Any:
        """The cluster-wide log of these keys (or futures, or stimulus ids): scheduler
        and worker entries `(source, key, start, finish, detail, stimulus_id, time)`,
        `source` being "scheduler" or a worker address, sorted by (wall-clock) time.
        `on_error="ignore"` leaves out workers that cannot answer."""
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore'; got {on_error!r}")
        keys = [k.key if isinstance(k, Future) else k for k in keys_or_stimuli]

        async def call() -> list:
            assert self.scheduler_comm is not None
            entries = await self.scheduler_comm.request("cluster_story", keys=keys, on_error=on_error)
            return [tuple(e) for e in entries]

        return self.sync(call)

    def dump_cluster_state(self, filename: str = "dask-cluster-dump", write_from_scheduler: bool | None = None,
                           exclude: Any = (), format: str = "msgpack", **storage_options: Any) -> Any:  # fmt: skip
        """Write the scheduler's and every worker's state plus versions to
        ``filename.msgpack.gz`` (or ``.yaml`` with `format="yaml"`, needs PyYAML); read it
        back with `shoal.cluster_dump.load_cluster_dump`. `write_from_scheduler` (default:
        whether `filename` is a URL) has the scheduler write it instead of this process."""
        from shoal import cluster_dump

        if format not in cluster_dump.FORMATS:
            raise ValueError(f"Unsupported format {format!r}; expected one of {list(cluster_dump.FORMATS)}")
        if format == "yaml":
            cluster_dump.require_yaml()  # fail here, before collecting anything, without PyYAML
        filename = os.fspath(filename)  # a str or a pathlib.Path
        if write_from_scheduler is None:
            write_from_scheduler = "://" in filename
        exclude = list(exclude)

        async def call() -> None:
            assert self.scheduler_comm is not None
            if write_from_scheduler:
                await self.scheduler_comm.request(
                    "dump_cluster_state", exclude=exclude, filename=filename, format=format,
                    storage_options=storage_options,
                )  # fmt: skip
                return
            state = await self.scheduler_comm.request("dump_cluster_state", exclude=exclude)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: cluster_dump.write_state(state, filename, format, **storage_options))

        return self.sync(call)

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

    # ------------------------------------------------------------------ plugins

    def futures_of(self, futures: Any) -> list:
        """The futures inside `futures` (nested collections, dask collections), bound to
        this client (distributed's `Client.futures_of`)."""
        from shoal.client.helpers import futures_of

        return futures_of(futures, client=self)

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

    def normalize_collection(self, collection: Any) -> Any:
        """`collection` with the graph entries whose keys this client holds futures of
        replaced by those futures, and the graph culled to what is still needed (so
        computing it reuses the results already on the cluster). Unchanged if none."""
        from shoal.client.graphs import insert_futures

        graph = collection.__dask_graph__()
        dsk = insert_futures(self, graph, collection.__dask_keys__())
        if dsk is graph:
            return collection
        from dask.delayed import Delayed

        if isinstance(collection, Delayed):
            return Delayed(collection.key, dsk)
        import copy

        out = copy.copy(collection)
        out.dask = dsk
        return out

    def benchmark_hardware(self) -> Any:
        """Bandwidth in bytes/s by transfer size: `{"disk": {size: bw}, "memory": {...},
        "network": {...}}`, averaged over the workers (network: between pairs of
        workers); empty dicts without workers. Takes several seconds
        (`shoal.benchmarking`)."""
        return self._request("benchmark_hardware")

    # ------------------------------------------------------------------ dask integration

    def get(self, dsk: Any, keys: Any, workers: Any = None, allow_other_workers: Any = None, resources: Any = None,
            sync: bool = True, asynchronous: Any = None, direct: Any = None, retries: Any = None, priority: int = 0,
            fifo_timeout: Any = "60s", actors: Any = None, **kwargs: Any) -> Any:  # fmt: skip
        """The scheduler function dask calls: compute `keys` of graph `dsk` on the cluster."""
        from shoal.client.graphs import graph_to_futures

        futures = graph_to_futures(self, dsk, keys, workers=workers, allow_other_workers=allow_other_workers,
                                   resources=resources, retries=retries, priority=priority,
                                   actors=actors)  # fmt: skip
        if not sync:
            return futures
        if self.asynchronous and asynchronous is not False:

            async def collect() -> Any:
                try:
                    return await self._gather(futures)
                finally:
                    del_futures(futures)

            return collect()
        # inside a task (dask.compute in a task): give the thread back while waiting, so
        # a worker with one thread can run what this task waits for
        worker = current_worker() if in_task() else None
        seceded = worker is not None and not getattr(task_state, "seceded", False)
        if seceded:
            worker.secede()  # type: ignore[union-attr]
        try:
            return self.gather(futures)
        finally:
            del_futures(futures)
            if seceded:
                worker.rejoin()  # type: ignore[union-attr]

    def compute(self, collections: Any, sync: bool = False, optimize_graph: bool = True, workers: Any = None,
                allow_other_workers: bool = False, resources: Any = None, retries: int = 0, priority: int = 0,
                fifo_timeout: Any = "60s", actors: Any = None, traverse: bool = True, **kwargs: Any) -> Any:  # fmt: skip
        from shoal.client.graphs import compute

        return compute(self, collections, sync=sync, optimize_graph=optimize_graph, workers=workers,
                       allow_other_workers=allow_other_workers, resources=resources, retries=retries,
                       priority=priority, traverse=traverse, actors=actors, **kwargs)  # fmt: skip

    def persist(self, collections: Any, optimize_graph: bool = True, workers: Any = None, allow_other_workers: Any = None,
                resources: Any = None, retries: Any = None, priority: int = 0, fifo_timeout: Any = "60s",
                actors: Any = None, **kwargs: Any) -> Any:  # fmt: skip
        from shoal.client.graphs import persist

        return persist(self, collections, optimize_graph=optimize_graph, workers=workers,
                       allow_other_workers=allow_other_workers, resources=resources, retries=retries,
                       priority=priority, actors=actors, **kwargs)  # fmt: skip


async def _log_failure(coro: Any, topic: str) -> None:
    try:
        await coro
    except Exception:
        logger.exception("event handler for topic %r failed", topic)


def _plot_task_stream(records: list, plot: Any, filename: str) -> Any:
    if not plot:
        return records
    from shoal.diagnostics.task_stream import TaskStreamFigure

    figure = TaskStreamFigure(records)
    if plot == "save":
        figure.save(filename)
    return records, figure


async def _on_forwarded_log(peer: Peer, record: dict, worker: str) -> None:
    from shoal.forward_logging import reemit

    reemit(record, worker)


def del_futures(futures: Any) -> None:
    leaves: list[Future] = []
    _collect(futures, leaves)
    for f in leaves:
        f.release()


async def _noop() -> None:
    return None


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


def _error_from_text(text: str) -> Pickled:
    """A task's error for a client that does not unpickle errors: rebuilt here from its
    text (a plain exception, nothing from the cluster is loaded)."""
    return dumps(RuntimeError(text or "the task failed"))


class _InPlace:
    """A result read from an in-process worker's memory (not a pickle)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _running_loop_or_none() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_secret_of = secret_of  # the name other modules of this session still use


@atexit.register
def _close_global_clients() -> None:
    for c in list(_global_clients.values()):
        try:
            if not c._asynchronous:
                c.close()
        except Exception:
            pass


__all__ = ["Client", "default_client"]
