"""The one container walker: futures inside nested arguments, results and collections.

One rule, whoever walks (`submit` / `map` packing arguments, `gather` unpacking
results, `futures_of`, `scatter` splitting its data, releasing a graph's futures):

- **containers** are lists, tuples, sets, frozensets and dicts, their subclasses too,
  walked at any depth; a dict's values are walked, never its keys;
- **leaves** are `Future`s (and, in a task's arguments, actor handles: `REFERENCES`);
  anything else is data and left alone (its own contents are not searched);
- **rebuilding** (`replace`): a container holding no leaf is returned as it is (no copy);
  one holding a leaf is rebuilt as its own type when it is a plain list / tuple / set /
  frozenset / dict or a namedtuple, and as that base type when it is another subclass
  (what a task receives, as in distributed). Arguments packed for a task are the one
  exception the caller asks for: a frozenset holding futures becomes a task building the
  frozenset, because dask resolves references inside lists, tuples, sets and dicts only.

`tests/unit/client/test_walk.py` shows the rule on each kind of container.

Not a walk over user structures, so not this rule: the nested key lists of dask's
`get(dsk, keys)` (`shoal.client.graphs`), where only lists nest (tuples are keys).
"""

from __future__ import annotations

from typing import Any, Callable

from dask._task_spec import Task, TaskRef, parse_input

from shoal.actor import Actor
from shoal.client.futures import Future
from shoal.exceptions import FutureCancelledError, FuturesCancelledError

__all__ = [
    "FUTURES",
    "REFERENCES",
    "collect",
    "futures_of",
    "has_futures",
    "is_container",
    "pack",
    "rebuild",
    "replace",
]

#: the leaves of results and of `futures_of`
FUTURES: tuple[type, ...] = (Future,)
#: the leaves of a task's arguments: futures and actor handles (both become references)
REFERENCES: tuple[type, ...] = (Future, Actor)

#: types that are never containers: a quick exit for the common arguments
_ATOMS = frozenset({int, float, str, bytes, bool, complex, type(None)})
_SEQUENCES = (list, tuple, set, frozenset)
_PLAIN = frozenset({list, tuple, set, frozenset})
_PLAIN_OR_DICT = _PLAIN | {dict}


def is_container(obj: Any) -> bool:
    """Whether the walker looks inside `obj`."""
    return type(obj) not in _ATOMS and isinstance(obj, (list, tuple, set, frozenset, dict))


def rebuild(obj: Any, items: list) -> Any:
    """A container like `obj` holding `items` (for a dict: new values for its keys, in
    order): its own type if plain or a namedtuple, else its base type."""
    t = type(obj)
    if t in _PLAIN:
        return t(items)
    if isinstance(obj, dict):
        return dict(zip(obj.keys(), items))
    if isinstance(obj, tuple):
        return t(*items) if hasattr(t, "_fields") else tuple(items)
    for base in (list, set, frozenset):
        if isinstance(obj, base):
            return base(items)
    raise TypeError(f"not a container: {type(obj).__name__}")  # pragma: no cover - callers check


def has_futures(obj: Any, leaves: tuple[type, ...] = FUTURES) -> bool:
    """Whether a leaf is inside `obj` (or is `obj`)."""
    t = type(obj)
    if t in _ATOMS:
        return False
    if t is Future:
        return True
    if t is tuple or t is list:
        values: Any = obj
    elif t is dict:
        values = obj.values()
    elif isinstance(obj, leaves):
        return True
    elif isinstance(obj, _SEQUENCES):
        values = obj
    elif isinstance(obj, dict):
        values = obj.values()
    else:
        return False
    for x in values:
        tx = type(x)
        if tx is Future:
            return True
        if tx not in _ATOMS and has_futures(x, leaves):
            return True
    return False


def collect(obj: Any, leaves: tuple[type, ...] = FUTURES, out: list | None = None) -> list:
    """Every leaf inside `obj`, depth first, repeats included (appended to `out`)."""
    if out is None:
        out = []
    t = type(obj)
    if t is Future or (t not in _ATOMS and isinstance(obj, leaves)):
        out.append(obj)
    elif t not in _ATOMS:
        _collect(obj, leaves, out)
    return out


def _collect(obj: Any, leaves: tuple[type, ...], out: list) -> None:
    if isinstance(obj, _SEQUENCES):
        values: Any = obj
    elif isinstance(obj, dict):
        values = obj.values()
    else:
        return
    for x in values:
        t = type(x)
        if t is Future:
            out.append(x)
        elif t in _ATOMS:
            continue
        elif isinstance(x, leaves):
            out.append(x)
        else:
            _collect(x, leaves, out)


def replace(
    obj: Any,
    fn: Callable[[Any], Any],
    leaves: tuple[type, ...] = FUTURES,
    frozen: Callable[[list], Any] | None = None,
) -> Any:
    """`obj` with every leaf `x` replaced by `fn(x)`, containers rebuilt by the rule of
    the module docstring (`frozen(items)` builds a frozenset holding leaves, if given)."""
    t = type(obj)
    if t is Future:
        return fn(obj)
    if t in _ATOMS:
        return obj
    if t in _PLAIN_OR_DICT:
        return _replace(obj, fn, leaves, frozen)
    if isinstance(obj, leaves):
        return fn(obj)
    return _replace(obj, fn, leaves, frozen)


def _replace(obj: Any, fn: Callable[[Any], Any], leaves: tuple[type, ...], frozen: Any) -> Any:
    t = type(obj)
    if t is dict:
        values: Any = obj.values()
    elif t in _PLAIN or isinstance(obj, _SEQUENCES):
        values = obj
    elif isinstance(obj, dict):
        values = obj.values()
    else:
        return obj
    items = []
    changed = False
    for x in values:
        tx = type(x)
        if tx is Future:
            items.append(fn(x))
            changed = True
        elif tx in _ATOMS:
            items.append(x)
        elif isinstance(x, leaves):
            items.append(fn(x))
            changed = True
        else:
            y = _replace(x, fn, leaves, frozen)
            if y is not x:
                changed = True
            items.append(y)
    if not changed:
        return obj
    if t is list or t is tuple:
        return t(items)
    if frozen is not None and isinstance(obj, frozenset):
        return frozen(items)
    return rebuild(obj, items)


def _frozenset_task(items: list) -> Any:
    return Task(None, frozenset, parse_input(items))


def pack(obj: Any, deps: list) -> Any:
    """A task's argument `obj` with futures and actor handles replaced by references to
    their keys (`TaskRef`); each one found is appended to `deps`."""
    if type(obj) in _ATOMS:
        return obj

    def ref(x: Any) -> TaskRef:
        deps.append(x)
        return TaskRef(x.key)

    return replace(obj, ref, REFERENCES, _frozenset_task)


def futures_of(o: Any, client: Any = None) -> list[Future]:
    """Every distinct Future inside `o`, in order: containers by the module's rule, and
    the graphs of dask collections. With `client`, cancelled futures among them raise
    `FuturesCancelledError`."""
    from dask.base import is_dask_collection

    out: list[Future] = []
    seen: set[int] = set()
    stack = [o]
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _ATOMS:
            continue
        if isinstance(x, Future):
            if id(x) not in seen:
                seen.add(id(x))
                out.append(x)
        elif isinstance(x, _SEQUENCES):
            stack.extend(reversed(list(x)))
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, TaskRef):
            continue
        elif is_dask_collection(x):
            stack.extend(reversed(list(x.__dask_graph__().values())))
    if client is not None:
        bad = [f for f in out if f.cancelled()]
        if bad:
            raise FuturesCancelledError(
                [FutureCancelledError(f.key, f._state.reason if f._state else None) for f in bad]
            )
    return out
