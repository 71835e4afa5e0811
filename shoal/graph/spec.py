"""How a task travels and runs: the one definition of a task spec's meaning.

A task reaches whoever runs it as ``(func, spec)``:

- ``func`` is a `Pickled` function shared by many tasks, or None;
- with ``func``: ``spec`` unpickles (with ``func`` filled in for its persistent
  reference) either to a dask graph node (a `Task` from a graph), or to ``(args,
  kwargs)`` from `Client.submit`/`map`, whose arguments may hold `TaskRef`s at any depth;
- without ``func``: ``spec`` unpickles to a complete dask graph node (`DataNode`,
  `Alias`, ...).

`run_task` executes it given its dependencies' values. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.protocol.serialize import Pickled, loads


def run_task(
    key: Any,
    func: Pickled | None,
    spec: Pickled,
    deps: dict,
    load_func: Callable[[Pickled], Any] = loads,
) -> Any:
    """Run one task; returns its result (possibly an awaitable for `async def` tasks)."""
    if func is None:
        return loads(spec)(deps)
    fn = load_func(func)
    obj = loads(spec, ref=fn)
    if type(obj) is not tuple:  # a dask graph node whose function is shared
        return obj(deps)
    args, kwargs = obj
    if deps:  # submit: references to other results, at any depth of the arguments
        from dask._task_spec import Task, parse_input

        task = Task(key, fn, *parse_input(args), **{k: parse_input(v) for k, v in kwargs.items()})
        return task(deps)
    return fn(*args, **kwargs)
