"""Turning calls into tasks: `submit`, `map`, dask's `get` / `compute` / `persist`, and
the `concurrent.futures` executor over them.

Functions and arguments are pickled here (the scheduler sees only opaque bytes), futures
inside the arguments become references to their keys (`shoal.client.walk`), and each
call leaves as one `update-graph` message through the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dask
import dask.config
from dask.base import tokenize
from dask.utils import funcname

from shoal._context import current_worker, in_task, task_state
from shoal.client.futures import Future
from shoal.client.graphs import warn_if_large
from shoal.client.walk import REFERENCES, collect, has_futures, pack
from shoal.exceptions import ClosedClientError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Pickled, dumps
from shoal.utils import typename



class SubmitMethods:
    """The client's task submission methods (a mixin of `Client`)."""

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
        return self.families.check_send(p, f"the arguments of task {key!r}")

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
        if has_futures(args, REFERENCES) or has_futures(kwargs, REFERENCES):
            args = pack(args, deps)
            kwargs = pack(kwargs, deps)
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
        self.outbox.send(m.UpdateGraph(((key, 0, spec, dep_keys, prio, ann),), (fp,), (key,)))
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
        kw_has_futures = has_futures(kwargs, REFERENCES)
        tasks = []
        futures = []
        base = next(self._priority_counter)
        for i, (k, args) in enumerate(zip(keys, arg_tuples)):
            if k in self.futures:
                futures.append(Future(k, self))
                continue
            kw = kwargs
            deps: list[Future] = []
            if kw_has_futures or has_futures(args, REFERENCES):
                args = pack(args, deps)
                kw = pack(kwargs, deps)
                self._check_own(deps)
            spec = self._pickle_args(k, args, kw)
            tasks.append((k, 0, spec, tuple({f.key: None for f in deps}), (-priority, base, i), ann))
            futures.append(Future(k, self))
        for _ in range(len(arg_tuples)):
            next(self._priority_counter)
        if tasks:
            warn_if_large(sum(t[2].nbytes for t in tasks), stacklevel=2)
            self.outbox.send(m.UpdateGraph(tuple(tasks), (fp,), tuple(t[0] for t in tasks)))
        return futures

    def get_executor(self, **kwargs: Any) -> Any:
        """A `concurrent.futures.Executor` submitting to this client (`shoal.client.executor`)."""
        from shoal.client.executor import ClientExecutor

        return ClientExecutor(self, **kwargs)

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


def del_futures(futures: Any) -> None:
    """Release every future inside `futures` now (not when garbage collected)."""
    for f in collect(futures):
        f.release()

