"""The one container walker (`shoal.client.walk`): the same rule for packing a task's
arguments, unpacking gathered results, `futures_of` and releasing a graph's futures."""

from __future__ import annotations

import collections

import pytest
from dask._task_spec import Task, TaskRef

from shoal.client import walk
from shoal.client.futures import Future

Point = collections.namedtuple("Point", "x y")


class MyList(list):
    pass


class MyTuple(tuple):
    pass


class MyDict(dict):
    pass


class MySet(set):
    pass


class Opaque:
    """Data that holds a future: not a container, so never searched."""

    def __init__(self, f: Future):
        self.f = f


F = Future("f")
G = Future("g")

# (container holding F, what `replace(..., fn=lambda f: 1)` gives) for every kind
KINDS = [
    ([F, 2], [1, 2]),
    ((F, 2), (1, 2)),
    ({F, 2}, {1, 2}),
    (frozenset([F, 2]), frozenset([1, 2])),
    ({"a": F, "b": 2}, {"a": 1, "b": 2}),
    (Point(F, 2), Point(1, 2)),  # a namedtuple keeps its type
    (MyList([F, 2]), [1, 2]),  # other subclasses: rebuilt as the base type
    (MyTuple((F, 2)), (1, 2)),
    (MyDict(a=F), {"a": 1}),
    (MySet([F]), {1}),
    ([[{"a": (F,)}]], [[{"a": (1,)}]]),  # any depth
]
IDS = ["list", "tuple", "set", "frozenset", "dict", "namedtuple", "list-subclass", "tuple-subclass",
       "dict-subclass", "set-subclass", "nested"]  # fmt: skip


@pytest.mark.parametrize("obj, replaced", KINDS, ids=IDS)
def test_every_walker_sees_the_same_futures(obj, replaced):
    assert walk.has_futures(obj)
    assert walk.collect(obj) == [F]
    assert walk.futures_of(obj) == [F]
    out = walk.replace(obj, lambda f: 1)
    assert out == replaced and type(out) is type(replaced)
    deps: list = []
    packed = walk.pack(obj, deps)
    assert deps == [F]
    if isinstance(obj, frozenset):  # dask resolves no references in frozensets: a task builds it
        assert isinstance(packed, Task)
    else:
        assert type(packed) is type(replaced)
        assert walk.collect(packed, (TaskRef,)) == [TaskRef("f")]


@pytest.mark.parametrize(
    "obj", [1, "s", b"b", None, [1, (2, {3})], {"a": [1]}, Point(1, 2), MyList([1]), Opaque(F), {F: 1}],
    ids=["int", "str", "bytes", "None", "nested", "dict", "namedtuple", "subclass", "opaque", "dict-key"],
)
def test_what_holds_no_future_comes_back_as_it_is(obj):
    # data objects are not searched, nor are a dict's keys
    assert not walk.has_futures(obj)
    assert walk.collect(obj) == [] and walk.futures_of(obj) == []
    assert walk.replace(obj, lambda f: 1) is obj
    deps: list = []
    assert walk.pack(obj, deps) is obj and deps == []


def test_only_containers_holding_futures_are_rebuilt():
    plain = MyList([1])
    obj = [plain, F]
    out = walk.replace(obj, lambda f: 1)
    assert out == [plain, 1] and out[0] is plain  # untouched: no copy, keeps its type


def test_repeats_order_and_distinct_futures():
    obj = [F, (G, F), {"a": G}]
    assert walk.collect(obj) == [F, G, F, G]  # depth first, repeats kept
    assert walk.futures_of(obj) == [F, G]  # distinct, in order


def test_actor_handles_are_references_of_arguments_only():
    from shoal.actor import Actor

    actor = Actor.__new__(Actor)  # a handle without a worker: enough for the walker
    actor.key = "counter-1"
    assert walk.has_futures([actor], walk.REFERENCES) and not walk.has_futures([actor])
    deps: list = []
    assert walk.pack({"a": actor}, deps) == {"a": TaskRef("counter-1")} and deps == [actor]
    assert walk.futures_of([actor]) == []


def test_futures_of_walks_dask_collections():
    import dask

    x = dask.delayed(sum)([1, 2])
    assert walk.futures_of([x]) == []
    graph_with_future = type("Coll", (), {
        "__dask_graph__": lambda self: {"a": F, "b": (G, 1)},
        "__dask_keys__": lambda self: ["a"],
        "__dask_postcompute__": lambda self: (lambda r: r, ()),
        "__dask_postpersist__": lambda self: (lambda r: r, ()),
        "__dask_tokenize__": lambda self: "c",
    })()  # fmt: skip
    assert walk.futures_of({"c": graph_with_future}) == [F, G]


def test_rebuild_rule():
    assert walk.rebuild(Point(0, 0), [1, 2]) == Point(1, 2)
    assert type(walk.rebuild(MyTuple(), [1])) is tuple
    assert walk.rebuild(MyDict(a=0, b=0), [1, 2]) == {"a": 1, "b": 2}
    assert type(walk.rebuild(MyDict(), [])) is dict


def test_is_container_is_the_rule_scatter_splits_by():
    for obj, _ in KINDS:
        assert walk.is_container(obj)
    for obj in (1, "s", b"b", None, Opaque(F), range(3)):
        assert not walk.is_container(obj)  # scatter turns a range into a list first
