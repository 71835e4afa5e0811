"""What a task receives when its arguments hold futures or persisted collections, and
what a bad key does (issue 17, items 2-4): as in distributed."""

from __future__ import annotations

import pytest
from argument_task_functions import Point, describe, inc, total_of_array, total_via_client

import dask
import dask.array as da
from dask import delayed
from dask._task_spec import TaskRef

from shoal import Client, FutureCancelledError


class Pair(tuple):
    pass


class Items(list):
    pass


class Mapping(dict):
    pass


def test_persisted_collection_as_an_argument(client):
    x = client.persist(da.arange(10, chunks=5))
    assert client.submit(total_of_array, x).result() == 45
    assert client.submit(total_via_client, x).result() == 45
    assert client.submit(lambda xs: int(xs[0].sum().compute()), [x]).result() == 45
    assert int(client.compute((x + 1).sum()).result()) == 55


def test_a_collection_persisted_by_another_client(client, cluster):
    x = client.persist(da.arange(12, chunks=4))
    with Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as other:
        assert int(other.compute(x.sum()).result()) == 66
        assert list(other.compute(x).result()) == list(range(12))  # only futures in the graph
    assert int(x.sum().compute()) == 66  # the first client's futures still hold the data


def test_a_graph_holding_another_clients_futures(client, cluster):
    with Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as other:
        f = other.submit(inc, 1)
        f.result()
        assert client.get({"total": (sum, [f, 10])}, "total") == 12
        assert client.compute(delayed(inc)(f)).result() == 3


def test_a_reference_to_a_key_nobody_has_fails_instead_of_hanging(client):
    with pytest.raises(FutureCancelledError, match="lost dependencies"):
        client.compute(delayed(inc)(TaskRef("no-such-key-anywhere"))).result(timeout=30)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda f: Point(f, 3), ("Point", Point(2, 3))),
        (lambda f: [Point(f, (f,))], ("list", [Point(2, (2,))])),
        (lambda f: {"p": Point(x=f, y=[f])}, ("dict", {"p": Point(2, [2])})),
        (lambda f: Pair((f, 1)), ("tuple", (2, 1))),
        (lambda f: Items([f, 1]), ("list", [2, 1])),
        (lambda f: Mapping(a=f), ("dict", {"a": 2})),
        (lambda f: frozenset([f]), ("frozenset", frozenset([2]))),
        (lambda f: {f}, ("set", {2})),
    ],
    ids=["namedtuple", "nested-namedtuple", "namedtuple-in-dict", "tuple-subclass", "list-subclass",
         "dict-subclass", "frozenset", "set"],  # fmt: skip
)
def test_futures_inside_containers_are_resolved(client, make, expected):
    f = client.submit(inc, 1)
    assert client.submit(describe, make(f)).result() == expected
    assert client.submit(describe, x=make(f)).result() == expected  # as a keyword
    assert client.map(describe, [make(f)])[0].result() == expected


def test_gather_rebuilds_namedtuples(client):
    f = client.submit(inc, 1)
    assert client.gather(Point(f, [f])) == Point(2, [2])


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda f: Point(f, 3), Point(2, 3)),
        (lambda f: Pair((f, 1)), (2, 1)),
        (lambda f: Items([f, 1]), [2, 1]),
        (lambda f: Mapping(a=f), {"a": 2}),
        (lambda f: frozenset([f]), frozenset([2])),
        (lambda f: [{"a": {f}}], [{"a": {2}}]),
    ],
    ids=["namedtuple", "tuple-subclass", "list-subclass", "dict-subclass", "frozenset", "nested"],
)
def test_gather_and_futures_of_follow_the_arguments_rule(client, make, expected):
    # one walker (`shoal.client.walk`): what a task receives is what gather returns
    f = client.submit(inc, 1)
    out = client.gather(make(f))
    assert out == expected and type(out) is type(expected)
    assert client.futures_of(make(f)) == [f]
    client.cancel(make(f))
    assert f.cancelled()


def test_scatter_splits_containers_by_the_same_rule(client):
    futures = client.scatter(Items([1, 2]))
    assert type(futures) is list and client.gather(futures) == [1, 2]
    mapping = client.scatter(Mapping(a=1))
    assert type(mapping) is dict and mapping["a"].result() == 1
    point = client.scatter(Point(1, 2))
    assert type(point) is Point and client.gather(point) == Point(1, 2)


def _get_with_a_bad_inner_key(c):
    bad = ("bad", object())
    return c.get({bad: (inc, 1), "ok": (inc, bad)}, "ok")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.compute(delayed(inc)(1, dask_key_name=("z", object()))),
        lambda c: c.persist(delayed(inc)(1, dask_key_name=object())),
        lambda c: c.get({("a", object()): (inc, 1)}, [("a", object())]),
        lambda c: _get_with_a_bad_inner_key(c),
        lambda c: c.submit(inc, 1, key=("z", object())),
        lambda c: c.map(inc, [1, 2], key=["fine", ("z", object())]),
        lambda c: dask.compute(delayed(inc)(1, dask_key_name=("z", object())), scheduler=c.get),
    ],
    ids=["compute", "persist", "get-wanted", "get-inner", "submit", "map", "dask.compute"],
)
def test_a_key_dask_rejects_raises_at_the_call(client, call):
    with pytest.raises(TypeError, match="key"):
        call(client)
    assert client.submit(inc, 1).result() == 2  # nothing half-sent broke the client
