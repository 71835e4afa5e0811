"""The scheduler's restarts and nannies: nannies registering (they get the nanny
plugins), why a worker is about to leave, `restart` (forget every task through the
`Restart` event, then restart the workers), `restart_workers` through their nannies, and
`terminate`. A mixin of `shoal.scheduler.server.Scheduler`.
"""

from __future__ import annotations

import asyncio
import logging

from shoal.protocol import messages as m
from shoal.rpc import Peer
from shoal.scheduler.events import Restart

logger = logging.getLogger("shoal.scheduler")


class Restarts:
    """The restart side of `Scheduler` (see the module docstring)."""

    async def _register_nanny(self, peer: Peer, nanny_id: str) -> dict:
        """Register a nanny; it gets the nanny plugins to set up before its worker starts."""
        if peer.role is not None:
            raise ValueError(f"this connection already registered as a {peer.role}")
        peer.role, peer.ident = "nanny", nanny_id
        self.nannies[nanny_id] = peer
        return {"plugins": list(self.plugin_host.nanny_plugins.items())}

    async def _worker_exit_reason(self, peer: Peer, worker: str, reason: str) -> None:
        if worker in self.workers:
            self._exit_reasons[worker] = reason

    def forget_all_tasks(self) -> str:
        """Cancel every task for every client (reason `scheduler-restart`, the `Restart`
        event): the scheduler forgets them all; clients drop their futures. Returns the
        stimulus id."""
        sid = self.new_stimulus_id("restart")
        self.stimulate(Restart(sid))
        marker = m.CancelledKeys((), m.RESTART_REASON, m.RESTART_MSG)  # "forget all your futures"
        for peer in list(self.clients.values()):
            if not peer.closed:
                peer.send(marker)
        return sid

    async def restart(self, timeout: float = 30.0, wait_for_workers: bool = True) -> None:
        """Forget all tasks, then `restart_workers` on every worker."""
        logger.info("Restarting all workers and forgetting all tasks")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        n_before = len(self.state.workers)
        sid = self.forget_all_tasks()
        self._call_extensions("restart", sid)
        out = await self.restart_workers(None, timeout=timeout, wait_for_workers=False)
        self.log_event("all", {"action": "restart"})
        # as distributed: as many workers as before must be back, nanny or not (a
        # deployment system may start new ones for those that were shut down)
        while wait_for_workers and len(self.state.workers) < n_before:
            remaining = deadline - loop.time()
            if remaining <= 0:
                missing = n_before - len(self.state.workers)
                msg = (
                    f"Waited for {n_before} worker(s) to reconnect after restarting but, after {timeout:g}s, "
                    f"{missing} have not returned. Consider a longer timeout, or `wait_for_workers=False`."
                )
                removed = sum(v == "removed" for v in out.values())
                if removed:
                    msg += (
                        f" The {removed} worker(s) not using Nannies were just shut down instead of restarted "
                        "(restart is only possible with Nannies). If your deployment system does not "
                        "automatically re-launch terminated processes, then those workers will never come back, "
                        "and `Client.restart` will always time out. Do not use `Client.restart` in that case."
                    )
                raise TimeoutError(msg)
            await self.workers_changed(remaining)

    async def restart_workers(
        self,
        workers: list[str] | None = None,
        timeout: float = 30.0,
        wait_for_workers: bool = True,
        on_error: str = "raise",
    ) -> dict[str, str]:
        """Restart these workers (addresses; all when None) through their nannies; workers
        without one are shut down ("removed"). With `wait_for_workers`, return once none of
        the old workers is left and the restarted ones are back. Returns `{address: "OK" |
        "removed" | "timed out"}`; with `on_error="raise"` a nanny that does not restart its
        worker in time is a `TimeoutError`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        n_before = len(self.state.workers)
        targets = list(self.state.workers) if workers is None else [w for w in workers if w in self.state.workers]
        by_nanny: dict[str, list[str]] = {}
        out: dict[str, str] = {}
        for addr in targets:
            ws = self.state.workers[addr]
            if ws.nanny and ws.nanny in self.nannies:
                by_nanny.setdefault(ws.nanny, []).append(addr)
            else:
                out[addr] = "removed"
        if out:
            logger.warning("Workers %s do not use a nanny and will be shut down without restarting them", list(out))
            for addr in out:
                self._exit_reasons[addr] = "restart without a nanny"
                wpeer = self.workers.get(addr)
                if wpeer is not None:
                    await wpeer.close()

        async def restart_one(nanny_id: str) -> None:
            request = self.nannies[nanny_id].request("restart", reason="restart-workers", timeout=timeout)
            await asyncio.wait_for(request, max(0.0, deadline - loop.time()))

        results = await asyncio.gather(*(restart_one(n) for n in by_nanny), return_exceptions=True)
        failed: list[str] = []
        for nanny_id, result in zip(by_nanny, results):
            for addr in by_nanny[nanny_id]:
                out[addr] = "timed out" if isinstance(result, BaseException) else "OK"
                if isinstance(result, BaseException):
                    failed.append(addr)
                    wpeer = self.workers.get(addr)
                    if wpeer is not None:  # make sure no old worker stays connected
                        await wpeer.close()
        self.log_event("all", {"action": "restart-workers", "workers": targets})
        if failed and on_error == "raise":
            raise TimeoutError(f"{len(failed)}/{len(by_nanny)} nanny worker(s) did not restart within {timeout}s: {failed}")
        expected = n_before - (len(out) - sum(v == "OK" for v in out.values()))
        # the old workers' connections close as their processes die
        while any(a in self.state.workers for a in targets) or (
            wait_for_workers and len(self.state.workers) < expected
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                back = len([a for a in self.state.workers if a not in targets])
                raise TimeoutError(
                    f"Waited for {len(targets)} worker(s) to reconnect after restarting, but after "
                    f"{timeout}s only {back} have returned. Consider a longer timeout, or "
                    "`wait_for_workers=False`."
                )
            await self.workers_changed(remaining)
        return out

    async def _restart(self, peer: Peer, timeout: float = 30.0, wait_for_workers: bool = True) -> None:
        await self.restart(timeout=timeout, wait_for_workers=wait_for_workers)

    async def _restart_workers(
        self, peer: Peer, workers: list[str], timeout: float = 30.0, on_error: str = "raise"
    ) -> dict[str, str]:
        return await self.restart_workers(workers, timeout=timeout, on_error=on_error)

    async def _terminate(self, peer: Peer) -> None:
        """Close the scheduler (after answering): its workers and nannies close with it."""
        logger.info("Scheduler closing at the request of %s", peer.ident)
        asyncio.get_running_loop().call_soon(lambda: self.spawn(self.close()))
