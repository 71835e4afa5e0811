"""Scheduler request handlers behind the Client's management and introspection API:
`replicate`, `rebalance`, `nbytes`, `call_stack`, metadata (a tree of small msgpack
values kept on the scheduler), versions, the cluster-wide story of keys, cluster dumps,
and worker setups (functions every current and future worker runs: a joining worker runs
them before the state machine learns of it, so before it gets any task; worker plugins
are kept as such setups).

Policy lives elsewhere: which worker gets a copy and what moves where are the pure plans
of `placement.plan_replicate` / `placement.plan_rebalance`; this module only executes
them: it asks recipients to fetch copies (`acquire_replicas`, the worker reports them
with `add-keys` before it answers), and only then drops the surplus replicas through the
state machine (`DropReplicas`), which never drops a key's last copy. A failed copy is
simply not followed by a drop, so no key is ever lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Any

from shoal import cluster_dump, forward_logging, log_buffer
from shoal.background import BackgroundTasks
from shoal.protocol.serialize import Pickled
from shoal.rpc import Peer
from shoal.scheduler import placement
from shoal.scheduler.dump import scheduler_state
from shoal.scheduler.events import DropReplicas, SetRetiring
from shoal.scheduler.extension import SchedulerExtension
from shoal.utils import key_prefix
from shoal.versions import get_versions, versions_report

logger = logging.getLogger("shoal.scheduler")

#: the request handlers this extension adds
OPS = (
    "replicate", "rebalance", "nbytes", "call_stack", "set_metadata", "get_metadata",
    "versions", "key_versions", "cluster_story", "dump_cluster_state", "add_worker_setup", "retire_self",
    "remove_worker_setup", "subscribe_logs", "forward_log",
    "benchmark_hardware", "retire_workers", "get_scheduler_logs", "get_worker_logs",
)  # fmt: skip


class AdminServer(SchedulerExtension):
    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        #: `Client.set_metadata` / `get_metadata`: a tree of small msgpack values
        self.metadata: dict = {}
        #: functions every worker runs when it joins: name -> (function, (args, kwargs)),
        #: both opaque `Pickled` values from a client (`register_worker_callbacks`, ...)
        self.worker_setups: dict[str, tuple[Pickled, Pickled]] = {}
        self._tasks = BackgroundTasks("the scheduler's admin")
        #: client id -> logger names whose forwarded records it wants (None: all)
        self.log_subscribers: dict[str, set[str | None]] = {}

    def handlers(self) -> dict[str, Any]:
        return {op: getattr(self, op) for op in OPS}

    def remove_client(self, client_id: str, stimulus_id: str) -> None:
        self.log_subscribers.pop(client_id, None)

    async def close(self) -> None:
        await self._tasks.close()

    # ------------------------------------------------------------------ worker setups

    async def add_worker_setup(
        self, peer: Peer, name: str, function: Pickled, args: Pickled, idempotent: bool = False
    ) -> dict:
        """Remember a setup for future workers and run it on the current ones now:
        `{address: (ok, value)}` as `broadcast` returns it. With `idempotent`, a setup
        of the same name already kept is left alone (`{}`). Worker plugins are setups
        that add the plugin to the worker (`shoal.diagnostics.plugin`)."""
        if idempotent and name in self.worker_setups:
            return {}
        self.worker_setups[name] = (function, args)
        return await self.scheduler.broadcast("run", function=function, args=args, wait=True)

    async def remove_worker_setup(
        self, peer: Peer, name: str, function: Any = None, args: Any = None, missing: str | None = None
    ) -> dict:
        """Forget a setup; run `function` (its teardown), if given, on the current
        workers. An unknown name is a `ValueError(missing)` when `missing` is given."""
        if self.worker_setups.pop(name, None) is None and missing is not None:
            raise ValueError(missing)
        if function is None:
            return {}
        return await self.scheduler.broadcast("run", function=function, args=args, wait=True)

    def admit_worker(self, address: str, admit: Any) -> bool:
        """Called for a worker that registers. With setups to run, run them on it first
        and call `admit()` after (so no task reaches it before): returns True. Without
        any, returns False and the caller admits the worker at once."""
        if not self.worker_setups:
            return False
        self._tasks.spawn(self._setup_then_admit(address, admit))
        return True

    async def _setup_then_admit(self, address: str, admit: Any) -> None:
        wpeer = self.scheduler.workers.get(address)
        done: set[str] = set()
        while True:  # setups added meanwhile are not broadcast to this worker: run them too
            todo = [(name, setup) for name, setup in self.worker_setups.items() if name not in done]
            if not todo:
                break
            for name, (function, args) in todo:
                done.add(name)
                if wpeer is None or wpeer.closed:
                    return
                try:
                    await wpeer.request("run", function=function, args=args, wait=True)
                except Exception as e:  # noqa: BLE001 - the worker still joins; the error is logged
                    logger.error("worker setup %r failed on %s: %s", name, address, e)
        if self.scheduler.workers.get(address) is wpeer:
            admit()

    # ------------------------------------------------------------------ data placement

    def _in_memory(self, keys: Any) -> list:
        tasks = self.scheduler.state.tasks
        missing = [k for k in keys if k not in tasks or tasks[k].state != "memory"]
        if missing:
            raise KeyError(f"these keys are not in memory on the cluster: {missing[:10]}")
        return [tasks[k] for k in keys]

    async def _copy(self, copies: list[tuple[Any, str]]) -> None:
        """Have each recipient fetch its keys from their current holders; waits for all."""
        tasks = self.scheduler.state.tasks
        by_recipient: dict[str, dict] = {}
        for key, recipient in copies:
            ts = tasks.get(key)
            if ts is not None and ts.state == "memory":
                by_recipient.setdefault(recipient, {})[key] = [w.address for w in ts.who_has]

        async def one(address: str, who_has: dict) -> None:
            peer = self.scheduler.workers.get(address)
            if peer is None:
                return
            nbytes = {key: tasks[key].nbytes for key in who_has if key in tasks}
            try:
                await peer.request("acquire_replicas", who_has=who_has, nbytes=nbytes)
            except Exception as e:  # noqa: BLE001 - a failed copy is only not followed by a drop
                logger.warning("worker %s could not fetch %d replicas: %s", address, len(who_has), e)

        await asyncio.gather(*(one(a, wh) for a, wh in by_recipient.items()))

    def _drop(self, drops: list[tuple[Any, str]]) -> None:
        if drops:
            sched = self.scheduler
            sched.stimulate(DropReplicas(sched.new_stimulus_id("drop-replicas"), drops))

    async def replicate(self, peer: Peer, keys: list, n: int | None = None, workers: Any = None) -> None:
        tasks = self._in_memory(keys)
        targets = self.scheduler.select_workers(workers)
        if workers is not None and not targets:
            raise ValueError(f"none of these workers is connected: {list(workers)}")
        holders = {ts.key: {w.address for w in ts.who_has} for ts in tasks}
        nbytes = {ts.key: ts.nbytes for ts in tasks}
        copies, drops = placement.plan_replicate(holders, nbytes, {ws.address: ws.nbytes for ws in targets}, n)
        await self._copy(copies)
        self._drop(drops)

    async def rebalance(self, peer: Peer, keys: list | None = None, workers: Any = None) -> None:
        st = self.scheduler.state
        if keys is None:
            tasks = [ts for ts in st.tasks.values() if ts.state == "memory"]
        else:
            tasks = self._in_memory(keys)
        targets = self.scheduler.select_workers(workers)
        holders = {ts.key: {w.address for w in ts.who_has} for ts in tasks}
        nbytes = {ts.key: ts.nbytes for ts in tasks}
        moves = placement.plan_rebalance(holders, nbytes, {ws.address: ws.nbytes for ws in targets})
        await self._copy([(key, recipient) for key, _, recipient in moves])
        drops = []
        for key, sender, recipient in moves:
            ts = st.tasks.get(key)
            ws = st.workers.get(recipient)
            if ts is not None and ws is not None and ws in ts.who_has:  # the copy arrived
                drops.append((key, sender))
        self._drop(drops)

    async def retire_workers(
        self, peer: Peer | None, workers: Any = None, names: Any = None, n: int | None = None,
        close_workers: bool = True, remove: bool = True, timeout: float = 60.0,
    ) -> dict:  # fmt: skip
        """Retire workers gracefully: copy every key only they hold to the remaining workers
        (`plan_replicate`, least-loaded first), then close them (through their nanny, so it
        does not restart them) and wait until they are gone. `workers` are addresses or
        names, `names` names; with neither, `n` (or every) idle worker the adaptive policy
        would close. A worker whose data could not be moved (no other worker, a failed copy)
        is kept and left out of the result. Returns `{address: identity}` of those retired.
        Tasks still processing on a retired worker are run again elsewhere."""
        sched = self.scheduler
        st = sched.state
        if workers is None and names is None:
            names = sched.workers_to_close(n=n)
        selected = sched.select_workers(list(workers if workers is not None else names))
        retiring = {ws.address for ws in selected}
        if not retiring:
            return {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._set_retiring(retiring, True)  # no new tasks for them from now on
        if close_workers or remove:
            # let the tasks they are running finish (their results then move too)
            while any((ws := st.workers.get(a)) is not None and ws.processing for a in retiring):
                if loop.time() >= deadline:
                    logger.warning("retiring workers %s still running tasks after %s s", sorted(retiring), timeout)
                    break
                await asyncio.sleep(0.05)  # no event for "a worker finished everything": poll
        for _ in range(10):  # tasks may finish on a retiring worker while copies are made
            unique = [
                ts for a in retiring if (ws := st.workers.get(a)) is not None for ts in ws.has_what
                if all(h.address in retiring for h in ts.who_has) and not ts.actor
            ]  # fmt: skip
            remaining = {ws.address: ws.nbytes for ws in st.workers.values() if ws.address not in retiring}
            if not unique or not remaining:
                break
            holders = {ts.key: set() for ts in unique}
            copies, _ = placement.plan_replicate(holders, {ts.key: ts.nbytes for ts in unique}, remaining, 1)
            await self._copy(copies)
        keep = set()
        for a in retiring:
            ws = st.workers.get(a)
            if ws is not None and any(all(h.address in retiring for h in ts.who_has) for ts in ws.has_what):
                keep.add(a)
        if keep:
            logger.warning("not retiring workers %s: their data could not be moved to another worker", sorted(keep))
        info = sched.identity()["workers"]
        out = {a: info[a] for a in retiring - keep if a in info}
        if not (close_workers or remove):
            self._set_retiring(retiring, False)
            return out
        self._set_retiring(keep, False)
        for address in out:
            sched.set_exit_reason(address, "retired")
            ws = st.workers.get(address)
            nanny = sched.nannies.get(ws.nanny) if ws is not None and ws.nanny else None
            if close_workers and nanny is not None and not nanny.closed:
                try:
                    await asyncio.wait_for(nanny.request("terminate", reason="retired"), timeout)
                    continue
                except Exception as e:  # noqa: BLE001 - fall back to closing the worker's connection
                    logger.warning("nanny of %s did not stop it: %s", address, e)
            wpeer = sched.workers.get(address)
            if wpeer is not None:
                await wpeer.close()  # a worker closes itself when it loses the scheduler
        deadline = loop.time() + timeout
        while any(a in st.workers for a in out) and loop.time() < deadline:
            await sched.workers_changed(deadline - loop.time())
        sched.log_event("all", {"action": "retire-workers", "workers": sorted(out)})
        logger.info("Retired workers %s", sorted(out))
        return out

    async def retire_self(self, peer: Peer, close: bool = True) -> dict:
        """A worker asks to be retired (its `lifetime` is over): its data moves to the
        others, then it is closed through its nanny (`close`), or only disconnected (not
        `close`: it exits and its nanny starts a fresh one)."""
        sched = self.scheduler
        address = next((a for a, p in sched.workers.items() if p is peer), None)
        if address is None:
            return {}
        return await self.retire_workers(None, workers=[address], close_workers=close, remove=True)

    def _set_retiring(self, addresses: Any, retiring: bool) -> None:
        if addresses:
            sched = self.scheduler
            sched.stimulate(SetRetiring(sched.new_stimulus_id("retire-workers"), list(addresses), retiring))

    # ------------------------------------------------------------------ logs

    async def get_scheduler_logs(self, peer: Peer | None, n: int | None = None) -> list:
        return log_buffer.recent(n)

    async def get_worker_logs(
        self, peer: Peer | None, n: int | None = None, workers: Any = None, nanny: bool = False
    ) -> dict:
        """`{worker address: [(level, line), ...]}` newest first, from each worker (or its
        nanny with `nanny=True`; workers without one are left out)."""
        sched = self.scheduler
        targets = sched.select_workers(workers)

        async def one(ws: Any) -> Any:
            if nanny:
                p = sched.nannies.get(ws.nanny) if ws.nanny else None
            else:
                p = sched.workers.get(ws.address)
            if p is None or p.closed:
                return None
            try:
                return await p.request("get_logs", n=n)
            except Exception as e:  # noqa: BLE001 - a process that cannot answer shows no logs
                logger.info("no logs from %s: %s", ws.address, e)
                return None

        results = await asyncio.gather(*(one(ws) for ws in targets))
        return {ws.address: r for ws, r in zip(targets, results) if r is not None}

    async def nbytes(self, peer: Peer, keys: list | None = None, summary: bool = True) -> dict:
        tasks = self.scheduler.state.tasks
        if keys is None:
            sizes = {k: ts.nbytes for k, ts in tasks.items() if ts.state == "memory"}
        else:
            sizes = {k: tasks[k].nbytes for k in keys if k in tasks and tasks[k].state == "memory"}
        if not summary:
            return sizes
        out: dict[str, int] = collections.defaultdict(int)
        for k, v in sizes.items():
            out[key_prefix(k)] += v
        return dict(out)

    async def call_stack(self, peer: Peer, keys: list | None = None) -> dict:
        """`{worker: {key: [frames]}}` of tasks executing now (workers running none are left out)."""
        st = self.scheduler.state
        if keys is None:
            targets = [ws.address for ws in st.workers.values() if ws.processing]
        else:
            targets = sorted({ts.processing_on.address for k in keys if (ts := st.tasks.get(k)) and ts.processing_on})

        async def one(address: str) -> dict:
            wpeer = self.scheduler.workers.get(address)
            if wpeer is None:
                return {}
            try:
                return await wpeer.request("call_stack", keys=keys)
            except Exception as e:  # noqa: BLE001 - a worker that cannot answer shows no stacks
                logger.info("worker %s did not send its call stacks: %s", address, e)
                return {}

        stacks = await asyncio.gather(*(one(a) for a in targets))
        return {a: s for a, s in zip(targets, stacks) if s}


    # ------------------------------------------------------------------ metadata

    async def set_metadata(self, peer: Peer, keys: list, value: Any) -> None:
        """Store `value` at the nested path `keys`, creating (or replacing non-dict)
        intermediate levels."""
        if not keys:
            raise ValueError("set_metadata needs at least one key")
        node = self.metadata
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = value

    async def get_metadata(self, peer: Peer, keys: list, has_default: bool = False, default: Any = None) -> Any:
        node: Any = self.metadata
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                if has_default:
                    return default
                raise KeyError(keys[: i + 1] if len(keys) > 1 else key)
            node = node[key]
        return node


    # ------------------------------------------------------------------ stories

    async def cluster_story(self, peer: Peer, keys: list, on_error: str = "raise") -> list:
        """Scheduler and worker story entries of these keys / stimulus ids, as
        `(source, key, start, finish, detail, stimulus_id, wall_time)` sorted by time;
        `source` is "scheduler" or a worker address."""
        # the scheduler state's clock is monotonic: shift its times to wall-clock time
        offset = time.time() - time.monotonic()
        entries = [
            ("scheduler", key, start, finish, {}, sid, t + offset)
            for key, start, finish, sid, t in self.scheduler.state.story(*keys)
        ]
        addresses = list(self.scheduler.workers)

        async def one(address: str) -> list:
            try:
                return await self.scheduler.workers[address].request("story", keys=keys)
            except Exception as e:
                if on_error == "raise":
                    raise RuntimeError(f"worker {address} did not send its story: {e}") from e
                return []

        for address, worker_entries in zip(addresses, await asyncio.gather(*(one(a) for a in addresses))):
            for entry in worker_entries:
                key, start, finish, sid, t = entry[:5]
                detail = entry[5] if len(entry) > 5 else {}
                entries.append((address, key, start, finish, detail, sid, t))
        entries.sort(key=lambda e: e[-1])
        return entries

    # ------------------------------------------------------------------ forwarded logging

    async def subscribe_logs(self, peer: Peer, logger_name: str | None, subscribe: bool = True) -> None:
        names = self.log_subscribers.setdefault(peer.ident, set())
        if subscribe:
            names.add(logger_name)
        else:
            names.discard(logger_name)
            if not names:
                del self.log_subscribers[peer.ident]

    async def forward_log(self, peer: Peer, record: dict) -> None:
        """A worker's log record (plain data): on to the clients that want its logger."""
        if peer.role != "worker":
            return
        name = record.get("name") or "root"
        for client_id, names in self.log_subscribers.items():
            if any(forward_logging.matches(n, name) for n in names):
                cpeer = self.scheduler.clients.get(client_id)
                if cpeer is not None and not cpeer.closed:
                    cpeer.notify("forwarded_log", record=record, worker=peer.ident)

    # ------------------------------------------------------------------ cluster dump

    async def dump_cluster_state(
        self, peer: Peer, exclude: Any = (), filename: str | None = None, format: str = "msgpack",
        storage_options: dict | None = None,
    ) -> Any:  # fmt: skip
        """The whole cluster's state as plain data (`shoal.cluster_dump`); with
        `filename`, written here by the scheduler and the path returned instead."""
        addresses = list(self.scheduler.workers)

        async def one(address: str) -> Any:
            try:
                return await self.scheduler.workers[address].request("dump_state", exclude=list(exclude))
            except Exception as e:  # noqa: BLE001 - a dump shows what it could not get
                return {"error": f"{type(e).__name__}: {e}"}

        workers = await asyncio.gather(*(one(a) for a in addresses))
        state = {
            "scheduler": scheduler_state(self.scheduler, exclude),
            "workers": dict(zip(addresses, workers)),
            "versions": cluster_dump.plain(await self.versions(peer)),
        }
        if filename is None:
            return state
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: cluster_dump.write_state(state, filename, format, **(storage_options or {}))
        )

    # ------------------------------------------------------------------ hardware benchmark

    async def benchmark_hardware(self, peer: Peer) -> dict:
        """Disk and memory bandwidth of every worker, network bandwidth between pairs
        of workers (shuffled), averaged by size (`shoal.benchmarking`)."""
        out: dict[str, dict[str, list[float]]] = {"disk": {}, "memory": {}, "network": {}}

        def add(kind: str, result: dict) -> None:
            for size, bandwidth in result.items():
                out[kind].setdefault(size, []).append(bandwidth)

        for kind in ("disk", "memory"):
            replies = await self.scheduler.broadcast(f"benchmark_{kind}")
            for ok, value in replies.values():
                if ok:
                    add(kind, value)
        workers = list(self.scheduler.state.workers)
        random.shuffle(workers)
        pairs = [(workers[i], workers[i + 1]) for i in range(0, len(workers) - 1, 2)]

        async def network(a: str, b: str) -> dict:
            wpeer = self.scheduler.workers.get(a)
            return await wpeer.request("benchmark_network", address=b) if wpeer is not None else {}

        for result in await asyncio.gather(*(network(a, b) for a, b in pairs)):
            add("network", result)
        return {kind: {size: sum(v) / len(v) for size, v in by_size.items()} for kind, by_size in out.items()}

    # ------------------------------------------------------------------ versions

    async def versions(self, peer: Peer, packages: Any = None) -> dict:
        """`{"scheduler": report, "workers": {address: report}}` (`versions.versions_report`)."""
        addresses = list(self.scheduler.workers)

        async def one(address: str) -> Any:
            wpeer = self.scheduler.workers.get(address)
            try:
                return await wpeer.request("versions", packages=packages)
            except Exception as e:  # noqa: BLE001 - a worker that cannot answer is reported as such
                return {"error": f"{type(e).__name__}: {e}"}

        reports = await asyncio.gather(*(one(a) for a in addresses))
        return {"scheduler": versions_report(packages), "workers": dict(zip(addresses, reports))}

    async def key_versions(self, peer: Peer) -> dict:
        """The key package versions of the scheduler and of each worker as it registered
        (no round trip to the workers): what a client checks when it connects."""
        workers = {ws.address: ws.versions or {} for ws in self.scheduler.state.workers.values()}
        return {"scheduler": get_versions(), "workers": workers}

