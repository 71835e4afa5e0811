"""Core client API against in-process clusters (in-process transport and TCP).

Workers run in this process, so tasks can block on a ``threading.Event`` (the ``gate``
fixture) instead of sleeping; every gate is opened at teardown so no worker thread stays
blocked. A task that must *never* run asks for a resource no worker has (``NEVER``): it sits
in the scheduler's no-worker state without occupying a thread.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import pathlib
import threading
import traceback
import uuid

import pytest
from task_functions import flaky, inc

from shoal import (
    CancelledError,
    Client,
    Future,
    FutureCancelledError,
    LocalCluster,
    TimeoutError,
    as_completed,
    default_client,
    fire_and_forget,
    futures_of,
    wait,
)
from shoal.exceptions import FuturesCancelledError

NEVER = {"NO-SUCH-RESOURCE": 1}

GATES: dict[str, threading.Event] = {}


def add(x, y=0):
    return x + y


def div(x, y):
    return x / y


def identity(x):
    return x


class MyError(Exception):
    pass


def raise_my_error(x):
    raise MyError(f"bad {x}")


def gated(x, gate):
    """Return ``x`` once the gate called ``gate`` opens (10 s safety limit)."""
    if not GATES[gate].wait(10):
        raise RuntimeError(f"gate {gate} never opened")
    return x


def write_file(path, text):
    pathlib.Path(path).write_text(text)
    return text


@pytest.fixture
def gate():
    """A fresh gate name; ``GATES[name].set()`` opens it. Opened at teardown regardless."""
    name = f"gate-{uuid.uuid4().hex}"
    GATES[name] = threading.Event()
    yield name
    GATES.pop(name).set()


def worker_addresses(c: Client) -> list[str]:
    return sorted(c.nthreads())


# ---------------------------------------------------------------------------- submit


def test_submit_basic(client):
    x = client.submit(inc, 10)
    assert isinstance(x, Future)
    assert x.client is client
    assert x.key.startswith("inc-")
    y = client.submit(inc, x)  # future as positional argument
    z = client.submit(add, 1, y=y)  # future as keyword argument
    assert z.result() == 13
    assert x.result() == 11
    assert x.done() and y.done()
    assert x.status == "finished"
    assert x.type is int


def test_submit_futures_nested_in_containers(client):
    x = client.submit(inc, 10)
    y = client.submit(inc, x)
    assert client.submit(sum, [x, y, 100]).result() == 11 + 12 + 100
    assert client.submit(identity, {"a": x, "b": [y]}).result() == {"a": 11, "b": [12]}


def test_submit_pure_keys_share_state(client):
    a = client.submit(inc, 1)
    b = client.submit(inc, 1)
    assert a.key == b.key
    assert a is not b
    assert a._state is b._state
    c = client.submit(inc, 2)
    assert c.key != a.key
    assert a.result() == b.result() == 2


def test_submit_pure_false_distinct_keys(client):
    a = client.submit(inc, 1, pure=False)
    b = client.submit(inc, 1, pure=False)
    assert a.key != b.key
    assert a.key.startswith("inc-") and b.key.startswith("inc-")
    assert a.result() == b.result() == 2


def test_submit_explicit_key_and_existing_key(client):
    a = client.submit(inc, 1, key="my-explicit-key")
    assert a.key == "my-explicit-key"
    assert a.result() == 2
    # same key again: a new Future sharing the existing state, nothing is resubmitted
    b = client.submit(inc, 100, key="my-explicit-key")
    assert b is not a
    assert b.key == a.key
    assert b._state is a._state
    assert b.result() == 2


def test_submit_tuple_key(client):
    f = client.submit(inc, 1, key=("x", 1))
    assert f.key == ("x", 1)
    assert f.result() == 2


def test_submit_not_callable(client):
    with pytest.raises(TypeError, match="First input to submit must be a callable function"):
        client.submit(1)
    with pytest.raises(TypeError, match="First input to submit must be a callable function"):
        client.submit("inc", 1)


def test_allow_other_workers_rules(client):
    w = worker_addresses(client)[0]
    with pytest.raises(ValueError):
        client.submit(inc, 1, allow_other_workers=True)
    with pytest.raises(TypeError):
        client.submit(inc, 1, workers=[w], allow_other_workers="sometimes")
    # loose restriction to a worker that does not exist: runs elsewhere
    f = client.submit(inc, 1, workers=["no-such-worker"], allow_other_workers=True, pure=False)
    assert f.result(timeout=5) == 2
    # strict restriction to a worker that does not exist: never runs
    g = client.submit(inc, 2, workers=["no-such-worker"], pure=False)
    with pytest.raises(TimeoutError):
        g.result(timeout=0.2)
    assert g.status == "pending"
    g.cancel()


def test_workers_restriction_observed_via_who_has(client):
    for w in worker_addresses(client):
        fs = [client.submit(inc, i, workers=[w], pure=False) for i in range(3)]
        fs.append(client.submit(inc, 10, workers=w, pure=False))  # a single string works too
        wait(fs)
        who = client.who_has(fs)
        for f in fs:
            assert list(who[f.key]) == [w]


# ---------------------------------------------------------------------------- map


def test_map_several_iterables_and_kwargs(client):
    assert client.gather(client.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    assert client.gather(client.map(add, [1, 2, 3], y=100)) == [101, 102, 103]
    # unequal lengths: zip semantics
    fs = client.map(add, [1, 2, 3], [10, 20])
    assert len(fs) == 2
    assert client.gather(fs) == [11, 22]
    # mapping over futures, and future kwargs
    xs = client.map(inc, range(4))
    ys = client.map(inc, xs)
    assert client.gather(ys) == [2, 3, 4, 5]
    y0 = client.submit(inc, 0)
    assert client.gather(client.map(add, [1, 2], y=y0)) == [2, 3]


def test_map_empty(client):
    assert client.map(inc, []) == []


def test_map_iterator_raises(client):
    with pytest.raises(TypeError, match="Dask no longer supports mapping over Iterators or Queues"):
        client.map(inc, iter([1, 2, 3]))
    with pytest.raises(TypeError):
        client.map(inc, (i for i in range(3)))


def test_map_naming(client):
    a = client.map(inc, range(4))
    b = client.map(inc, range(4))
    assert [f.key for f in a] == [f.key for f in b]
    assert all(x._state is y._state for x, y in zip(a, b))
    assert len({f.key for f in a}) == 4
    c = client.map(inc, range(4), pure=False)
    d = client.map(inc, range(4), pure=False)
    assert {f.key for f in c}.isdisjoint(f.key for f in d)
    assert len({f.key for f in c}) == 4
    assert client.gather(c) == client.gather(d) == [1, 2, 3, 4]


def test_map_key_prefix_and_list(client):
    default = client.map(inc, [1, 2, 3])
    prefixed = client.map(inc, [1, 2, 3], key="foo")
    assert all(f.key.startswith("inc-") for f in default)
    assert all(f.key.startswith("foo-") for f in prefixed)
    # the token after the prefix does not depend on the prefix
    assert [f.key.split("-", 1)[1] for f in default] == [f.key.split("-", 1)[1] for f in prefixed]
    explicit = client.map(inc, [1, 2, 3], key=["k-a", "k-b", "k-c"])
    assert [f.key for f in explicit] == ["k-a", "k-b", "k-c"]
    assert client.gather(explicit) == [2, 3, 4]
    assert client.gather(prefixed) == [2, 3, 4]


def test_map_batch_size(client):
    plain = client.map(inc, range(10))
    batched = client.map(inc, range(10), batch_size=3)
    assert len(batched) == 10
    assert [f.key for f in batched] == [f.key for f in plain]
    assert client.gather(batched) == list(range(1, 11))
    keys = [f"batch-{i}" for i in range(7)]
    fs = client.map(inc, range(7), key=keys, batch_size=2)
    assert [f.key for f in fs] == keys
    assert client.gather(fs) == list(range(1, 8))


# ---------------------------------------------------------------------------- gather


def test_gather_nested_structures(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    data = {"a": [x, 1, "s"], "b": (y, None), "c": {"d": x, "e": [y, (x,)]}, "f": 3.5}
    out = client.gather(data)
    assert out == {"a": [2, 1, "s"], "b": (3, None), "c": {"d": 2, "e": [3, (2,)]}, "f": 3.5}
    assert isinstance(out["b"], tuple)
    assert client.gather(x) == 2
    assert client.gather([x, [y, [x]]]) == [2, [3, [2]]]
    assert client.gather((x, y)) == (2, 3)


def test_gather_errors(client):
    x = client.submit(inc, 1)
    bad = client.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError):
        client.gather([x, bad])
    with pytest.raises(MyError, match="bad 5"):
        client.gather(client.submit(raise_my_error, 5))
    assert client.gather([x, bad], errors="skip") == [2]
    [xx] = client.gather([x, bad], errors="skip")
    assert xx == 2


# ---------------------------------------------------------------------------- scatter


def test_scatter_single(client):
    f = client.scatter(123)
    assert isinstance(f, Future)
    assert f.key.startswith("int-")
    assert f.status == "finished"
    assert f.type is int
    assert f.result() == 123
    assert client.submit(inc, f).result() == 124


def test_scatter_containers(client):
    fs = client.scatter([1, 2, 3])
    assert isinstance(fs, list) and all(isinstance(f, Future) for f in fs)
    assert client.gather(fs) == [1, 2, 3]
    t = client.scatter((1, 2))
    assert type(t) is tuple and client.gather(list(t)) == [1, 2]
    s = client.scatter({4, 5})
    assert type(s) is set and sorted(client.gather(list(s))) == [4, 5]
    r = client.scatter(range(3))
    assert type(r) is list and client.gather(r) == [0, 1, 2]
    d = client.scatter({"scatter-k1": 10, "scatter-k2": 20})
    assert type(d) is dict
    assert d["scatter-k1"].key == "scatter-k1"
    assert d["scatter-k2"].key == "scatter-k2"
    assert client.gather(d) == {"scatter-k1": 10, "scatter-k2": 20}
    assert client.submit(add, d["scatter-k1"], y=d["scatter-k2"]).result() == 30


def test_scatter_hash(client):
    a = client.scatter(7654)
    b = client.scatter(7654)
    assert a.key == b.key
    c = client.scatter(7654, hash=False)
    d = client.scatter(7654, hash=False)
    assert len({a.key, c.key, d.key}) == 3
    assert c.key.startswith("int-")
    assert client.gather([a, b, c, d]) == [7654] * 4


def test_scatter_broadcast(client, poll):
    f = client.scatter(b"broadcast-me" * 10, broadcast=True)
    workers = set(worker_addresses(client))
    assert set(client.who_has([f])[f.key]) == workers
    assert client.submit(len, f).result() == 120


def test_scatter_workers_restriction(client):
    w = worker_addresses(client)[1]
    f = client.scatter(31337, workers=[w])
    assert list(client.who_has([f])[f.key]) == [w]
    fs = client.scatter([1, 2, 3], workers=[w], hash=False)
    who = client.who_has(fs)
    assert all(list(who[g.key]) == [w] for g in fs)


# ---------------------------------------------------------------------------- cancel


def test_cancel_chain(client, poll):
    x = client.submit(inc, 1)
    y = client.submit(inc, x, resources=NEVER)  # never runs
    z = client.submit(inc, y)
    assert x.result() == 2
    client.cancel(y)
    assert y.cancelled()
    assert y.status == "cancelled"
    poll(z.cancelled)
    assert x.result() == 2  # upstream unaffected
    assert x.status == "finished"
    with pytest.raises(FutureCancelledError, match="cancelled for reason"):
        y.result()
    with pytest.raises(CancelledError):
        z.result()
    assert client.submit(inc, x).result() == 3


def test_future_cancel_method(client):
    f = client.submit(inc, 5, resources=NEVER)
    f.cancel()
    assert f.cancelled()
    assert f.done()
    with pytest.raises(CancelledError):
        f.result()
    assert f.key not in client.futures


def test_cancelled_error_identity():
    assert CancelledError is concurrent.futures.CancelledError
    assert issubclass(FutureCancelledError, concurrent.futures.CancelledError)
    assert issubclass(FuturesCancelledError, concurrent.futures.CancelledError)
    assert TimeoutError is builtins.TimeoutError


# ---------------------------------------------------------------------------- exceptions


def test_remote_exception_type_and_traceback(client):
    f = client.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        f.result()
    assert any(fr.name == "div" for fr in traceback.extract_tb(info.value.__traceback__))
    tb = f.traceback()
    frames = traceback.extract_tb(tb)
    assert any(fr.name == "div" for fr in frames)
    assert any("x / y" in (fr.line or "") for fr in frames)
    assert isinstance(f.exception(), ZeroDivisionError)
    assert f.status == "error"
    assert f.done()

    g = client.submit(raise_my_error, 3)
    with pytest.raises(MyError, match="bad 3"):
        g.result()
    assert type(g.exception()) is MyError


def test_exception_propagates_to_dependents(client):
    bad = client.submit(div, 1, 0)
    dep = client.submit(inc, bad)
    dep2 = client.submit(add, 1, y=dep)
    with pytest.raises(ZeroDivisionError):
        dep.result()
    with pytest.raises(ZeroDivisionError):
        dep2.result()
    assert dep2.status == "error"
    # unrelated tasks are unaffected
    ok = client.map(inc, range(5))
    assert client.gather(ok) == [1, 2, 3, 4, 5]


def test_future_exception_none_on_success(client):
    f = client.submit(inc, 1)
    assert f.exception() is None
    assert f.traceback() is None
    assert f.result() == 2


def test_result_timeout_then_result(client, gate):
    f = client.submit(gated, 42, gate)
    with pytest.raises(TimeoutError) as info:
        f.result(timeout=0.05)
    assert isinstance(info.value, builtins.TimeoutError)
    assert "timed out after" in str(info.value)
    assert f.status == "pending"
    assert not f.done()
    GATES[gate].set()
    assert f.result(timeout=5) == 42
    assert f.status == "finished"


# ---------------------------------------------------------------------------- callbacks / release / gc


def test_add_done_callback(client, gate):
    called = threading.Event()
    seen = []

    def cb(fut):
        seen.append((fut, fut.status))
        called.set()

    f = client.submit(gated, 1, gate)
    f.add_done_callback(cb)
    assert not called.is_set()
    GATES[gate].set()
    assert called.wait(5)
    assert seen == [(f, "finished")]

    # a future that is already done calls back too
    again = threading.Event()
    f.add_done_callback(lambda fut: again.set())
    assert again.wait(5)

    # errors call back as well
    erred = threading.Event()
    statuses = []

    def cb_err(fut):
        statuses.append(fut.status)
        erred.set()

    bad = client.submit(div, 1, 0)
    bad.add_done_callback(cb_err)
    assert erred.wait(5)
    assert statuses == ["error"]


def test_release(client):
    f = client.submit(inc, 1, resources=NEVER)  # still pending
    key = f.key
    assert key in client.futures
    f.release()
    assert key not in client.futures
    f.release()  # idempotent
    g = client.submit(inc, 1000, pure=False)
    assert g.result() == 1001
    gkey = g.key
    g.release()
    assert gkey not in client.futures


def test_garbage_collection(client, poll):
    x = client.submit(inc, 1, pure=False)
    y = Future(x.key, client)  # second reference to the same key
    assert x.result() == 2
    key = x.key
    assert key in client.who_has()
    del x
    assert key in client.futures  # y still holds it
    assert y.result() == 2
    del y
    assert key not in client.futures
    poll(lambda: key not in client.who_has())


# ---------------------------------------------------------------------------- retries


def test_retries(client, tmp_path):
    ok = client.submit(flaky, str(tmp_path / "a"), 2, retries=2, pure=False)
    assert ok.result(timeout=3) == 2
    bad = client.submit(flaky, str(tmp_path / "b"), 2, retries=1, pure=False)
    with pytest.raises(ValueError, match="attempt 1"):  # only the last exception surfaces
        bad.result(timeout=3)
    fs = client.map(flaky, [str(tmp_path / "m0"), str(tmp_path / "m1")], [1, 1], retries=1)
    assert client.gather(fs) == [1, 1]


@pytest.fixture
def slow_stream_client(cluster, monkeypatch):
    """A client whose scheduler->client message stream lags by 0.2 s (like a distant
    scheduler), so retry() must reset the local state itself rather than rely on the
    scheduler's task-retried message. Test-only hook: wraps ``Client._on_messages``, order kept."""
    orig = Client._on_messages
    backlog: collections.deque = collections.deque()

    def drain(self, peer):
        orig(self, peer, backlog.popleft())

    def delayed(self, peer, msgs):
        backlog.append(list(msgs))
        asyncio.get_running_loop().call_later(0.2, drain, self, peer)

    monkeypatch.setattr(Client, "_on_messages", delayed)
    with Client(cluster) as c:
        yield c


def test_slow_stream_client_works(slow_stream_client):
    c = slow_stream_client
    assert c.submit(inc, 1).result() == 2
    with pytest.raises(ZeroDivisionError):
        c.submit(div, 1, 0).result()


def test_future_retry(slow_stream_client, tmp_path):
    client = slow_stream_client
    f = client.submit(flaky, str(tmp_path / "c"), 1, pure=False)
    with pytest.raises(ValueError, match="attempt 0"):
        f.result()
    f.retry()
    assert f.status in ("pending", "finished")  # no longer the old error
    assert f.result() == 1


def test_retry_dependencies(slow_stream_client, tmp_path):
    client = slow_stream_client
    x = client.submit(flaky, str(tmp_path / "d"), 1, pure=False)
    y = client.submit(inc, x)
    with pytest.raises(ValueError):
        y.result()
    y.retry()  # re-runs the erred dependency too
    assert y.status in ("pending", "finished")
    assert y.result() == 2
    assert x.result() == 1


def test_retry_reruns(client, tmp_path):
    x = client.submit(flaky, str(tmp_path / "e"), 1, pure=False)
    y = client.submit(inc, x)
    with pytest.raises(ValueError):
        y.result()
    client.retry([y])
    assert y.result() == 2


# ---------------------------------------------------------------------------- fire_and_forget, futures_of


def test_fire_and_forget(client, gate, tmp_path, poll):
    path = tmp_path / "side-effect.txt"
    a = client.submit(gated, "hello", gate, pure=False)
    b = client.submit(write_file, str(path), a, pure=False)
    bkey = b.key
    fire_and_forget(b)
    del a, b
    assert bkey not in client.futures
    GATES[gate].set()
    poll(lambda: path.exists() and path.read_text() == "hello")
    # the pseudo-client lets go of the key once it is done
    poll(lambda: bkey not in client.who_has())


def test_futures_of(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    assert futures_of([x, {"a": y, "b": 1}, (2, x), "x"]) == [x, y]
    assert futures_of({"k": [y]}) == [y]
    assert futures_of(3) == []
    assert futures_of(x) == [x]


# ---------------------------------------------------------------------------- wait


def test_wait_all(client):
    fs = client.map(inc, range(5))
    bad = client.submit(div, 1, 0)
    done, not_done = wait(fs + [bad])
    assert done == set(fs) | {bad}
    assert not_done == set()
    res = wait(fs)
    assert res.done == set(fs)


def test_wait_timeout(client, gate):
    f = client.submit(gated, 1, gate)
    with pytest.raises(TimeoutError):
        wait(f, timeout=0.05)
    with pytest.raises(TimeoutError):
        wait([f], timeout="50ms")
    GATES[gate].set()
    done, not_done = wait([f], timeout=5)
    assert done == {f}


def test_wait_first_completed(client, gate):
    slow = client.submit(gated, 1, gate)
    fast = client.submit(inc, 1)
    done, not_done = wait([slow, fast], return_when="FIRST_COMPLETED")
    assert fast in done
    assert slow in not_done
    GATES[gate].set()
    done, not_done = wait([slow, fast], return_when="ALL_COMPLETED")
    assert done == {slow, fast} and not not_done


def test_wait_bad_arguments(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    with pytest.raises(TypeError, match="timeout= keyword received a non-numeric value"):
        wait(x, y)
    with pytest.raises(NotImplementedError):
        wait([x], return_when="SOMETIMES")


def test_wait_cancelled_raises(client):
    f = client.submit(inc, 1, resources=NEVER)
    g = client.submit(inc, 2)
    f.cancel()
    with pytest.raises(CancelledError):
        wait([f, g])


# ---------------------------------------------------------------------------- as_completed


def test_as_completed_order(client, gate):
    slow = client.submit(gated, "slow", gate)
    fast = client.submit(inc, 1)
    ac = as_completed([slow, fast])
    assert next(ac) is fast
    GATES[gate].set()
    assert next(ac) is slow
    with pytest.raises(StopIteration):
        next(ac)


def test_as_completed_add_update(client):
    x, y, z = client.map(inc, [1, 2, 3])
    ac = as_completed([x])
    ac.add(y)
    ac.update([z])
    assert {f for f in ac} == {x, y, z}
    with pytest.raises(TypeError, match="Input must be a future"):
        as_completed([x]).update([1])


def test_as_completed_with_results(client):
    fs = client.map(inc, range(5))
    out = dict(as_completed(fs, with_results=True))
    assert {f.key: v for f, v in out.items()} == {f.key: i + 1 for i, f in enumerate(fs)}
    bad = client.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError):
        list(as_completed([bad], with_results=True))


def test_as_completed_raise_errors_false(client):
    good = client.submit(inc, 1)
    bad = client.submit(div, 1, 0)
    cancelled = client.submit(inc, 2, resources=NEVER)
    cancelled.cancel()
    res = dict(as_completed([good, bad, cancelled], with_results=True, raise_errors=False))
    assert res[good] == 2
    typ, exc, tb = res[bad]
    assert typ is ZeroDivisionError
    assert isinstance(exc, ZeroDivisionError)
    assert isinstance(res[cancelled], CancelledError)


def test_as_completed_count_empty_batches(client):
    assert list(as_completed([])) == []
    fs = client.map(inc, range(6))
    ac = as_completed(fs)
    assert ac.count() == 6
    assert not ac.is_empty()
    seen = []
    for batch in ac.batches():
        assert isinstance(batch, list) and batch
        seen.extend(batch)
    assert set(seen) == set(fs) and len(seen) == 6
    assert ac.count() == 0
    assert ac.is_empty()


def test_as_completed_repeats(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    ac = as_completed([x, x, y])
    ac.add(y)
    seen = list(ac)
    assert len(seen) == 4
    assert seen.count(x) == 2 and seen.count(y) == 2


# ---------------------------------------------------------------------------- current / default client


def test_current_and_default_client(cluster):
    with Client(cluster) as c:
        assert Client.current() is c
        assert default_client() is c
        with Client(cluster) as c2:
            assert Client.current() is c2
            assert default_client() is c2
        assert Client.current() is c
        assert default_client() is c
        assert c.submit(inc, 1).result() == 2
    assert c.status == "closed"
    assert c2.status == "closed"
    with pytest.raises(ValueError, match="No clients found"):
        default_client()
    with pytest.raises(ValueError, match="No clients found"):
        Client.current()


def test_client_context_manager_and_close(cluster):
    c = Client(cluster)
    assert c.status == "running"
    assert c.id.lower().startswith("client")
    f = c.submit(inc, 1)
    assert f.result() == 2
    c.close()
    assert c.status == "closed"
    c.close()  # idempotent
    # the cluster outlives a client connected to it
    assert cluster.status == "running"
    with Client(cluster) as c3:
        assert c3.submit(inc, 2).result() == 3


# ---------------------------------------------------------------------------- serialization


def test_unpicklable_argument(client):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="(?i)pickle") as info:
        client.submit(identity, lock)
    assert "lock" in str(info.value)
    # the cluster keeps working
    assert client.submit(inc, 1).result() == 2
    assert client.gather(client.map(inc, range(3))) == [1, 2, 3]


# ---------------------------------------------------------------------------- run / introspection


def test_run(client):
    ws = worker_addresses(client)
    assert client.run(inc, 1) == {w: 2 for w in ws}
    assert client.run(inc, 1, workers=[]) == {}
    assert client.run(inc, 1, workers=[ws[0]]) == {ws[0]: 2}

    def addr(dask_worker):
        return dask_worker.address

    assert client.run(addr) == {w: w for w in ws}


def test_run_on_scheduler(client, cluster):
    def addr(dask_scheduler):
        return dask_scheduler.address

    assert client.run_on_scheduler(addr) == cluster.scheduler_address
    assert client.run_on_scheduler(add, 1, y=2) == 3


def test_scheduler_info(client, cluster):
    info = client.scheduler_info()
    assert {"type", "id", "address", "services", "started", "n_workers", "total_threads",
            "total_memory", "workers"} <= set(info)  # fmt: skip
    assert info["address"] == cluster.scheduler_address
    assert info["n_workers"] == 2
    assert info["total_threads"] == 2
    assert set(info["workers"]) == set(worker_addresses(client))
    for w in info["workers"].values():
        assert w["nthreads"] == 1
        assert {"host", "id", "memory_limit", "name", "nthreads", "resources", "status"} <= set(w)


def test_nthreads_who_has_has_what(client):
    nt = client.nthreads()
    assert len(nt) == 2 and set(nt.values()) == {1}
    w = worker_addresses(client)[0]
    assert client.nthreads(workers=[w]) == {w: 1}
    assert client.nthreads(w) == {w: 1}
    f = client.submit(inc, 77, workers=[w], pure=False)
    f.result()
    assert client.who_has([f]) == {f.key: [w]} or list(client.who_has([f])[f.key]) == [w]
    assert f.key in client.who_has()
    hw = client.has_what()
    assert set(hw) == set(nt)
    assert f.key in hw[w]
    assert f.key in client.has_what([w])[w]


# ---------------------------------------------------------------------------- resources


@pytest.fixture(scope="module")
def resource_cluster(cluster_kwargs):
    with LocalCluster(**cluster_kwargs, resources={"GPU": 1}) as cl:
        yield cl


def test_resources(resource_cluster):
    with Client(resource_cluster) as c:
        info = c.scheduler_info()
        assert all(w["resources"] == {"GPU": 1} for w in info["workers"].values())
        fs = c.map(inc, range(6), resources={"GPU": 1})
        assert c.gather(fs) == list(range(1, 7))
        assert c.submit(inc, 1, resources={"GPU": 1}, pure=False).result() == 2
        # more than any worker has: never runs
        too_much = c.submit(inc, 2, resources={"GPU": 2})
        with pytest.raises(TimeoutError):
            too_much.result(timeout=0.2)
        assert too_much.status == "pending"


def test_a_client_whose_scheduler_went_away_is_no_longer_dasks_default(poll):
    import dask

    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    c = Client(cluster)
    assert dask.config.get("scheduler") == c.get
    cluster.close()
    poll(lambda: c.status == "closed")
    # dask's own scheduler runs the work again, not the closed client
    assert dask.config.get("scheduler", None) != c.get
    assert dask.delayed(inc)(1).compute() == 2
    c.close()
