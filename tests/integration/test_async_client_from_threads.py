"""An asynchronous client is asynchronous only on its own event loop.

Called from any other thread while its loop runs (a plain thread, a task of an
in-process cluster using `get_client()` / `worker_client()` / a coordination primitive),
every method blocks and returns its value, as in distributed. On its loop the same
methods return awaitables. One table of calls covers every public method of `Client`,
`Future` and every coordination primitive.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
import pytest

from shoal import (
    Client,
    Event,
    Future,
    LocalCluster,
    Lock,
    MultiLock,
    Queue,
    Semaphore,
    Variable,
    get_client,
    worker_client,
)
from shoal.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

pytestmark = pytest.mark.filterwarnings("ignore:`Client.register_.*_plugin` has been deprecated:DeprecationWarning")


class _SchedPlugin(SchedulerPlugin):
    name = "threads-test-scheduler-plugin"


class _WorkerPlugin(WorkerPlugin):
    name = "threads-test-worker-plugin"


def _inc(x: int) -> int:
    return x + 1


def _ready_future(c: Client) -> Future:
    """A finished future, whatever thread asks (blocks via the loop's thread-safe door)."""
    f = c.submit(_inc, 1, key=f"ready-{uuid.uuid4().hex}")
    _wait_done(f)
    return f


def _wait_done(f: Future) -> None:
    done = threading.Event()
    f.add_done_callback(lambda _: done.set())
    assert done.wait(30), f"{f} did not finish"


def _is_list_of_two(v: Any) -> bool:
    return list(v) == [2, 2]


def _name() -> str:
    return f"n-{uuid.uuid4().hex}"


def _publish_and(c: Client, op: str) -> Any:
    name = _name()
    fut = _ready_future(c)
    if op == "publish":
        return c.publish_dataset(fut, name=name)
    _block(c.publish_dataset(fut, name=name))
    if op == "get":
        return c.get_dataset(name)
    if op == "unpublish":
        return c.unpublish_dataset(name)
    return c.list_datasets()


def _pending(value: Any) -> bool:
    """Whether `value` is something still to be awaited (a coroutine or asyncio future),
    as opposed to a value (a `Future` or a dask collection, awaitable too, is a value)."""
    return asyncio.iscoroutine(value) or isinstance(value, asyncio.Future)


def _block(value: Any) -> Any:
    assert not _pending(value)
    return value


def _subscribe_then_unsubscribe(c: Client) -> Any:
    name = _name()
    c.subscribe_topic(name, print)
    return c.unsubscribe_topic(name)


def _write_scheduler_file(c: Client, p: Any) -> Any:
    c.scheduler_file = None  # one file per client: let each call write its own
    return c.write_scheduler_file(str(p / f"{_name()}.json"))


#: name -> (call(client, tmp_path) -> value, check(value) -> bool, awaitable on the loop)
CALLS: dict[str, tuple[Any, Any, bool]] = {
    "submit": (lambda c, p: c.submit(_inc, 1), lambda v: isinstance(v, Future), False),
    "map": (lambda c, p: c.map(_inc, [1, 2]), lambda v: all(isinstance(f, Future) for f in v), False),
    "gather": (lambda c, p: c.gather([_ready_future(c), _ready_future(c)]), _is_list_of_two, True),
    "scatter": (lambda c, p: c.scatter([1, 2]), lambda v: all(isinstance(f, Future) for f in v), True),
    "cancel": (lambda c, p: c.cancel([c.submit(_inc, 2)]), lambda v: v is None, True),
    "retry": (lambda c, p: c.retry([_ready_future(c)]), lambda v: v is None, True),
    "compute": (
        lambda c, p: c.compute(dask.delayed(_inc)(1), sync=True),
        lambda v: v == 2,
        True,
    ),
    "persist": (lambda c, p: c.persist(dask.delayed(_inc)(1)), lambda v: hasattr(v, "dask"), False),
    "get": (lambda c, p: c.get({"gk": (_inc, 1)}, "gk"), lambda v: v == 2, True),
    "normalize_collection": (
        lambda c, p: c.normalize_collection(dask.delayed(_inc)(1)),
        lambda v: hasattr(v, "dask"),
        False,
    ),
    "scheduler_info": (lambda c, p: c.scheduler_info(), lambda v: v["type"] == "Scheduler" and v["workers"], False),
    "nthreads": (lambda c, p: c.nthreads(), lambda v: sum(v.values()) == 4, True),
    "ncores": (lambda c, p: c.ncores(), lambda v: sum(v.values()) == 4, True),
    "who_has": (lambda c, p: c.who_has([_ready_future(c)]), lambda v: len(v) == 1, True),
    "has_what": (lambda c, p: c.has_what(), lambda v: isinstance(v, dict) and len(v) == 2, True),
    "processing": (lambda c, p: c.processing(), lambda v: isinstance(v, dict) and len(v) == 2, True),
    "nbytes": (lambda c, p: c.nbytes(summary=False), lambda v: isinstance(v, dict), True),
    "call_stack": (lambda c, p: c.call_stack(), lambda v: isinstance(v, dict), True),
    "get_task_stream": (lambda c, p: c.get_task_stream(), lambda v: isinstance(v, list), True),
    "profile": (lambda c, p: c.profile(), lambda v: isinstance(v, dict), True),
    "log_event": (lambda c, p: c.log_event("threads-topic", {"x": 1}), lambda v: v is None, True),
    "get_events": (lambda c, p: c.get_events("threads-topic"), lambda v: isinstance(v, tuple), True),
    "subscribe_topic": (lambda c, p: c.subscribe_topic(_name(), print), lambda v: v is None, False),
    "unsubscribe_topic": (lambda c, p: _subscribe_then_unsubscribe(c), lambda v: v is None, False),
    "run": (lambda c, p: c.run(lambda: 7), lambda v: list(v.values()) == [7, 7], True),
    "run_on_scheduler": (lambda c, p: c.run_on_scheduler(lambda: 8), lambda v: v == 8, True),
    "wait_for_workers": (lambda c, p: c.wait_for_workers(2), lambda v: v is None, True),
    "get_scheduler_logs": (lambda c, p: c.get_scheduler_logs(), lambda v: isinstance(v, (list, tuple)), True),
    "get_worker_logs": (lambda c, p: c.get_worker_logs(), lambda v: isinstance(v, dict) and len(v) == 2, True),
    "write_scheduler_file": (
        lambda c, p: _write_scheduler_file(c, p),
        lambda v: v is None,
        False,
    ),
    "publish_dataset": (lambda c, p: _publish_and(c, "publish"), lambda v: v is None, True),
    "get_dataset": (lambda c, p: _publish_and(c, "get"), lambda v: isinstance(v, Future), True),
    "unpublish_dataset": (lambda c, p: _publish_and(c, "unpublish"), lambda v: v is None, True),
    "list_datasets": (lambda c, p: _publish_and(c, "list"), lambda v: isinstance(v, (list, tuple)), True),
    "replicate": (lambda c, p: c.replicate([_ready_future(c)], n=2), lambda v: v is None, True),
    "rebalance": (lambda c, p: c.rebalance([_ready_future(c)]), lambda v: v is None, True),
    "set_metadata": (lambda c, p: c.set_metadata("threads-meta", 1), lambda v: v is None, True),
    "get_metadata": (lambda c, p: c.get_metadata("no-such-meta", default=5), lambda v: v == 5, True),
    "get_versions": (lambda c, p: c.get_versions(), lambda v: "scheduler" in v and "client" in v, True),
    "story": (lambda c, p: c.story(_ready_future(c).key), lambda v: isinstance(v, list) and v, True),
    "dump_cluster_state": (
        lambda c, p: c.dump_cluster_state(str(p / _name())),
        lambda v: v is None,
        True,
    ),
    "register_plugin": (lambda c, p: c.register_plugin(_WorkerPlugin(), name=_name()), lambda v: isinstance(v, dict), True),
    "register_worker_plugin": (
        lambda c, p: c.register_worker_plugin(_WorkerPlugin(), name=_name()),
        lambda v: isinstance(v, dict),
        True,
    ),
    "unregister_worker_plugin": (
        lambda c, p: c.unregister_worker_plugin(_block(_register_worker_plugin(c))),
        lambda v: isinstance(v, dict),
        True,
    ),
    "register_scheduler_plugin": (
        lambda c, p: c.register_scheduler_plugin(_SchedPlugin(), name=_name()),
        lambda v: v is None,
        True,
    ),
    "unregister_scheduler_plugin": (
        lambda c, p: c.unregister_scheduler_plugin(_block(_register_scheduler_plugin(c))),
        lambda v: v is None,
        True,
    ),
    "register_worker_callbacks": (lambda c, p: c.register_worker_callbacks(lambda: None), lambda v: isinstance(v, dict), True),
    "upload_file": (lambda c, p: c.upload_file(_module_file(p), load=False), lambda v: isinstance(v, dict), True),
    "forward_logging": (lambda c, p: c.forward_logging("threads-test", logging.INFO), lambda v: isinstance(v, dict), True),
    "unforward_logging": (lambda c, p: c.unforward_logging("threads-test"), lambda v: v is None or isinstance(v, dict), True),
    "get_executor": (lambda c, p: c.get_executor().submit(_inc, 1).result(), lambda v: v == 2, False),
    "future.result": (lambda c, p: c.submit(_inc, 3).result(), lambda v: v == 4, True),
    "future.exception": (lambda c, p: c.submit(_inc, 3).exception(), lambda v: v is None, True),
    "future.traceback": (lambda c, p: c.submit(_inc, 3).traceback(), lambda v: v is None, True),
    "future.cancel": (lambda c, p: c.submit(_inc, 5).cancel(), lambda v: v is None, True),
    "future.retry": (lambda c, p: _ready_future(c).retry(), lambda v: v is None, True),
}


def _register_worker_plugin(c: Client) -> str:
    name = _name()
    c.register_worker_plugin(_WorkerPlugin(), name=name)
    return name


def _register_scheduler_plugin(c: Client) -> str:
    name = _name()
    c.register_scheduler_plugin(_SchedPlugin(), name=name)
    return name


def _module_file(p: Any) -> str:
    path = p / f"mod_{uuid.uuid4().hex}.py"
    path.write_text("VALUE = 1\n")
    return str(path)


#: Client methods deliberately not in the table (they end or replace the cluster the
#: other calls share, or are not calls at all; `connect_to` is a coroutine for shoal's
#: own modules on the client's loop); `test_the_table_covers_the_client` keeps the two
#: lists complete.
NOT_IN_TABLE = {
    "close", "shutdown", "restart", "restart_workers", "retire_workers", "start",
    "as_current", "current", "sync", "benchmark_hardware", "futures_of", "connect_to",
}  # fmt: skip


@pytest.fixture(scope="module")
def loop_and_client():
    """An asynchronous cluster and client living on an event loop in another thread:
    the test's own thread is "any other thread"."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="user-loop", daemon=True)
    thread.start()

    async def start() -> tuple[LocalCluster, Client]:
        cl = await LocalCluster(n_workers=2, threads_per_worker=2, processes=False, asynchronous=True, dashboard_address=":0")
        c = await Client(cl, asynchronous=True, set_as_default=False)
        return cl, c

    cl, c = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield loop, c
    finally:

        async def stop() -> None:
            await c.close()
            await cl.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_table_covers_the_client():
    public = {n for n, v in inspect.getmembers(Client) if not n.startswith("_") and callable(v)}
    assert public - NOT_IN_TABLE - set(CALLS) == set()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_blocking_from_another_thread(loop_and_client, tmp_path, name):
    loop, c = loop_and_client
    call, check, _ = CALLS[name]
    assert c.asynchronous is False  # not on the client's loop
    value = call(c, tmp_path)
    assert not _pending(value), f"{name} returned an awaitable from another thread"
    assert check(value), f"{name} returned {value!r}"


@pytest.mark.parametrize("name", sorted(n for n, (_, _, aw) in CALLS.items() if aw and not n.startswith("future.")))
def test_awaitable_on_the_client_loop(loop_and_client, tmp_path, name):
    loop, c = loop_and_client
    call, check, _ = CALLS[name]
    # set-up calls the table makes (a ready future, a published name) block; they run
    # in this thread first, so the call under test is the only one on the loop
    setup: dict[str, Any] = {}
    if name in ("gather", "who_has", "story", "replicate", "rebalance", "retry"):
        setup["f"] = [_ready_future(c), _ready_future(c)]
    if name in ("get_dataset", "unpublish_dataset", "list_datasets"):
        setup["name"] = _name()
        c.publish_dataset(_ready_future(c), name=setup["name"])
    if name == "unregister_worker_plugin":
        setup["name"] = _register_worker_plugin(c)
    if name == "unregister_scheduler_plugin":
        setup["name"] = _register_scheduler_plugin(c)
    if name == "upload_file":
        setup["name"] = _module_file(tmp_path)
    on_loop: dict[str, Any] = {
        "gather": lambda: c.gather(setup["f"]),
        "who_has": lambda: c.who_has(setup["f"][:1]),
        "story": lambda: c.story(setup["f"][0].key),
        "replicate": lambda: c.replicate(setup["f"][:1], n=2),
        "rebalance": lambda: c.rebalance(setup["f"][:1]),
        "retry": lambda: c.retry(setup["f"][:1]),
        "get_dataset": lambda: c.get_dataset(setup["name"]),
        "unpublish_dataset": lambda: c.unpublish_dataset(setup["name"]),
        "list_datasets": lambda: c.list_datasets(),
        "publish_dataset": lambda: c.publish_dataset(c.submit(_inc, 1), name=_name()),
        "unregister_worker_plugin": lambda: c.unregister_worker_plugin(setup["name"]),
        "unregister_scheduler_plugin": lambda: c.unregister_scheduler_plugin(setup["name"]),
        "upload_file": lambda: c.upload_file(setup["name"], load=False),
    }
    if name == "gather":
        check = _is_list_of_two

    async def main() -> Any:
        assert c.asynchronous is True
        value = on_loop[name]() if name in on_loop else call(c, tmp_path)
        assert _pending(value), f"{name} did not return an awaitable on the client's loop"
        return await value

    value = asyncio.run_coroutine_threadsafe(main(), loop).result(60)
    if name not in ("who_has",):
        assert check(value), f"{name} returned {value!r}"


def test_future_awaits_on_the_loop(loop_and_client):
    loop, c = loop_and_client

    async def main() -> list[Any]:
        f = c.submit(_inc, 10)
        return [await f, await f.result(), await f.exception(), await f.traceback()]

    assert asyncio.run_coroutine_threadsafe(main(), loop).result(60) == [11, 11, None, None]


# ---------------------------------------------------------------------- primitives


def _primitives_roundtrip() -> dict[str, Any]:
    """Every method of every coordination primitive, blocking, as a task would call them."""
    n = uuid.uuid4().hex
    out: dict[str, Any] = {}
    lock = Lock(f"lock-{n}")
    with lock:
        out["lock.locked"] = lock.locked()
    out["lock.acquire"] = lock.acquire(timeout=5)
    out["lock.release"] = lock.release()
    out["lock.acquire_nonblocking"] = lock.acquire(blocking=False)
    lock.release()
    sem = Semaphore(2, name=f"sem-{n}")
    out["semaphore.acquire"] = sem.acquire()
    out["semaphore.get_value"] = sem.get_value()
    out["semaphore.release"] = sem.release()
    with sem:
        out["semaphore.with"] = sem.get_value()
    ev = Event(f"ev-{n}")
    out["event.is_set"] = ev.is_set()
    out["event.wait_timeout"] = ev.wait(timeout=0.01)
    ev.set()
    out["event.wait"] = ev.wait()
    ev.clear()
    out["event.cleared"] = ev.is_set()
    var = Variable(f"var-{n}")
    var.set(5)
    out["variable.get"] = var.get()
    c = get_client()
    fut = c.submit(_inc, 1)
    var.set(fut)
    out["variable.get_future"] = var.get().result()
    var.delete()
    q = Queue(f"q-{n}")
    q.put(1)
    q.put(fut)
    out["queue.qsize"] = q.qsize()
    out["queue.get"] = q.get()
    out["queue.get_future"] = q.get().result()
    bq = Queue(f"bq-{n}", maxsize=2)
    bq.put(3)
    out["queue.get_batch"] = bq.get(batch=True)
    ml = MultiLock([f"a-{n}", f"b-{n}"])
    out["multilock.acquire"] = ml.acquire()
    out["multilock.locked"] = ml.locked()
    out["multilock.release"] = ml.release()
    with MultiLock([f"a-{n}"]) as held:
        out["multilock.with"] = held.locked()
    return out


EXPECTED = {
    "lock.locked": True, "lock.acquire": True, "lock.release": True,
    "lock.acquire_nonblocking": True, "semaphore.acquire": True, "semaphore.get_value": 1,
    "semaphore.release": True, "semaphore.with": 1, "event.is_set": False,
    "event.wait_timeout": False, "event.wait": True, "event.cleared": False,
    "variable.get": 5, "variable.get_future": 2, "queue.qsize": 2, "queue.get": 1,
    "queue.get_future": 2, "queue.get_batch": [3], "multilock.acquire": True,
    "multilock.locked": True, "multilock.release": None, "multilock.with": True,
}  # fmt: skip


def test_primitives_block_in_a_task(loop_and_client):
    loop, c = loop_and_client
    assert c.submit(_primitives_roundtrip, pure=False).result() == EXPECTED


def test_primitives_block_in_a_thread(loop_and_client):
    """`get_client()` in a plain thread finds the default client; make ours current."""
    loop, c = loop_and_client
    with ThreadPoolExecutor(1) as pool:

        def in_thread() -> dict[str, Any]:
            with c.as_current():
                return _primitives_roundtrip()

        assert pool.submit(in_thread).result(60) == EXPECTED


def test_primitives_awaitable_on_the_loop(loop_and_client):
    loop, c = loop_and_client
    n = uuid.uuid4().hex

    async def main() -> list[Any]:
        lock = Lock(f"l-{n}", client=c)
        async with lock:
            locked = await lock.locked()
        ev = Event(f"e-{n}", client=c)
        await ev.set()
        var = Variable(f"v-{n}", client=c)
        await var.set(3)
        q = Queue(f"q-{n}", client=c)
        await q.put(4)
        sem = Semaphore(1, name=f"s-{n}", client=c)
        async with sem:
            value = await sem.get_value()
        return [locked, await ev.is_set(), await var.get(), await q.get(), value]

    assert asyncio.run_coroutine_threadsafe(main(), loop).result(60) == [True, True, 3, 4, 1]


def _uses_get_client(x: int) -> tuple[bool, int]:
    c = get_client()
    return c.asynchronous, c.submit(_inc, x).result()


def _uses_worker_client(x: int) -> tuple[bool, int, list[int]]:
    with worker_client() as c:
        futures = c.map(_inc, [x, x + 1])
        return c.asynchronous, c.submit(_inc, x).result(), c.gather(futures)


def test_get_client_and_worker_client_in_a_task(loop_and_client):
    loop, c = loop_and_client
    assert c.submit(_uses_get_client, 1).result() == (False, 2)
    assert c.submit(_uses_worker_client, 1).result() == (False, 2, [2, 3])
