"""Managing the cluster from a client: run functions on workers or the scheduler, wait
for, restart and retire workers, their logs, shutdown, the scheduler file.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from dask.typing import no_default

from shoal.comm.errors import CommClosedError
from shoal.exceptions import WorkerStartTimeoutError
from shoal.protocol.serialize import Pickled, dumps, loads
from shoal.utils import parse_timeout



class AdminMethods:
    """The client's cluster management methods (a mixin of `Client`)."""

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

    def run_on_scheduler(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` on the scheduler (it may take `dask_scheduler=`)."""
        wait = kwargs.pop("wait", True)

        async def call() -> Any:
            assert self.scheduler_comm is not None
            value = await self.scheduler_comm.request(
                "run_on_scheduler", function=dumps(function), args=dumps((args, kwargs)), wait=wait
            )
            return self.families.load(value)

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
                    obj = self.families.load(value)
                elif self.families.accept_errors:
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

    def restart(self, timeout: Any = no_default, wait_for_workers: bool = True) -> Any:
        """Restart every worker through its nanny (workers without one are shut down),
        forget all tasks and cancel every client's futures (reason `scheduler-restart`).
        With `wait_for_workers`, return once as many workers as before are back; else
        `TimeoutError` after `timeout` (default 4x the connect timeout), saying so when
        workers without a nanny were shut down (nothing brings those back unless a
        deployment system starts new ones), as in distributed."""
        t = 4 * self._timeout if timeout is no_default else parse_timeout(timeout)

        async def call() -> None:
            assert self.scheduler_comm is not None
            self.outbox.flush()
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
