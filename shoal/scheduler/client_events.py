"""The scheduler's client-side stimuli: clients coming and going, named holds, a restart,
and the messages clients send (`update-graph`, release / desire / cancel / retry keys,
scattered data). A mixin of `SchedulerState` (`state.py`): the handlers run inside its one
door, with its state and shared mechanics. PURE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.priority import priority_rank
from shoal.protocol.serialize import Pickled
from shoal.scheduler.events import (
    AddClient,
    ClientMsg,
    HoldKeys,
    ReleaseHold,
    RemoveClient,
    Restart,
    WantKeys,
)
from shoal.scheduler.instructions import ToClient
from shoal.scheduler.records import (
    FIRE_AND_FORGET,
    Recs,
    SchedClient,
    SchedTask,
    shared_parts,
    with_dependent,
    with_member,
    without_member,
)
from shoal.utils import Key


class ClientEvents:
    """Handlers of the client-side events and client messages (see the module docstring)."""

    # ------------------------------------------------------------------ event handlers

    def _handle_add_client(self, ev: AddClient, recs: Recs) -> None:
        self.clients.setdefault(ev.client_id, SchedClient(ev.client_id))

    def _handle_remove_client(self, ev: RemoveClient, recs: Recs) -> None:
        cs = self.clients.pop(ev.client_id, None)
        if cs is None:
            return
        for ts in cs.wants:
            without_member(ts.who_wants, cs)
            self._maybe_release(ts, recs)
        cs.wants.clear()

    def _handle_client_msg(self, ev: ClientMsg, recs: Recs) -> None:
        cs = self.clients.get(ev.client_id)
        if cs is None:
            cs = self.clients[ev.client_id] = SchedClient(ev.client_id)
        self._CLIENT_HANDLERS[type(ev.msg)](self, cs, ev.msg, recs, ev.stimulus_id)

    def _hold(self, holder: str) -> SchedClient:
        hs = self.holds.get(holder)
        if hs is None:
            if holder in self.clients:
                raise ValueError(f"hold name {holder!r} is a client's id")
            hs = self.holds[holder] = SchedClient(holder, hold=True)
        return hs

    def _handle_hold_keys(self, ev: HoldKeys, recs: Recs) -> None:
        hs = self._hold(ev.holder)
        tasks = self.tasks
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is not None:
                self._want(hs, ts, recs)

    def _handle_release_hold(self, ev: ReleaseHold, recs: Recs) -> None:
        hs = self.holds.get(ev.holder)
        if hs is None:
            return
        if ev.keys is None:
            del self.holds[ev.holder]
            held = list(hs.wants)
        else:
            held = [ts for ts in map(self.tasks.get, ev.keys) if ts is not None and ts in hs.wants]
        for ts in held:
            without_member(ts.who_wants, hs)
            hs.wants.discard(ts)
            self._maybe_release(ts, recs)

    def _handle_want_keys(self, ev: WantKeys, recs: Recs) -> None:
        cs = self.clients.get(ev.client_id)
        if cs is not None:  # else gone meanwhile: nobody to keep them for
            self._client_wants(cs, ev.keys, recs)

    def _handle_restart(self, ev: Restart, recs: Recs) -> None:
        roots: dict[SchedTask, None] = {}
        for owners in (self.clients, self.holds):
            for cs in owners.values():
                roots.update(dict.fromkeys(cs.wants))
        if roots:
            self._cancel_all(roots, m.RESTART_REASON, m.RESTART_MSG, recs)

    # client messages

    def _update_graph(self, cs: SchedClient, msg: m.UpdateGraph, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        funcs = msg.funcs
        new: list[tuple[SchedTask, tuple]] = []
        for key, func_index, spec, deps, priority, ann in msg.tasks:
            ts = tasks.get(key)
            if ts is not None and (ts.spec is not None or ts.state != "released"):
                continue  # known key: the existing task wins (distributed semantics)
            if ts is None:
                if type(key) is tuple:
                    key = shared_parts(key, self._key_parts)
                ts = tasks[key] = SchedTask(key)
            ts.func = funcs[func_index] if func_index >= 0 else None
            # no out-of-band buffers: keep just the bytes (a Pickled wrapper is 48 B a task)
            ts.spec = spec.header if type(spec) is Pickled and not spec.buffers and type(spec.header) is bytes else spec
            ts.priority = priority_rank(priority)
            if ann:
                self._annotate(ts, ann)
            new.append((ts, deps))
        lost: list[SchedTask] = []
        missing: dict[Key, Key] = {}  # lost task's key -> the dependency nobody has
        for ts, deps in new:
            linked = []
            for dk in deps:
                dts = tasks.get(dk)
                if dts is None:
                    lost.append(ts)
                    missing[ts.key] = dk
                    break
                if dts not in linked:
                    linked.append(dts)
                    dts.dependents = with_dependent(dts.dependents, ts)
            ts.dependencies = tuple(linked)
        cancelled: set[SchedTask] = set()
        for ts in lost:
            cancelled |= self._cancel(ts, "lost dependencies", _missing_text(ts.key, missing[ts.key]), recs)
        if self.observers:
            for obs in self.observers:
                obs.new_keys(cs.id, msg.wanted)
        for key in msg.wanted:
            ts = tasks.get(key)
            if ts is None or ts in cancelled:
                k = key if key in missing else next(iter(missing), None)
                text = _missing_text(k, missing[k]) if k is not None else None
                self._out.append(ToClient(cs.id, m.CancelledKeys((key,), "lost dependencies", text)))
                continue
            self._want(cs, ts, recs)

    def _annotate(self, ts: SchedTask, ann: dict) -> None:
        workers = ann.get("workers")
        if workers:
            ts.restrictions = frozenset(workers)
            ts.loose = bool(ann.get("allow_other_workers"))
        if ann.get("resources"):
            ts.resources = dict(ann["resources"])
        if ann.get("retries"):
            ts.retries = int(ann["retries"])
        if ann.get("actor"):
            ts.actor = True

    def _want(self, cs: SchedClient, ts: SchedTask, recs: Recs) -> None:
        ts.who_wants = with_member(ts.who_wants, cs)
        cs.wants.add(ts)
        if cs.hold:
            if ts.state == "released":
                recs[ts.key] = "waiting"
        elif ts.state == "memory":
            self._out.append(ToClient(cs.id, self._in_memory_msg(ts, None)))
        elif ts.state == "erred":
            self._out.append(ToClient(cs.id, self._erred_msg(ts)))
        elif ts.state == "released":
            recs[ts.key] = "waiting"

    def _release_keys(self, cs: SchedClient, msg: m.ReleaseKeys, recs: Recs, sid: str) -> None:
        for key in msg.keys:
            ts = self.tasks.get(key)
            if ts is None or cs not in ts.who_wants:
                continue
            without_member(ts.who_wants, cs)
            cs.wants.discard(ts)
            self._maybe_release(ts, recs)

    def _desire_keys(self, cs: SchedClient, msg: m.DesireKeys, recs: Recs, sid: str) -> None:
        if msg.client_id == FIRE_AND_FORGET:
            target = self._hold(FIRE_AND_FORGET)
        else:
            target = self.clients.get(msg.client_id)
            if target is None:
                target = self.clients[msg.client_id] = SchedClient(msg.client_id)
        self._client_wants(target, msg.keys, recs)

    def _client_wants(self, target: SchedClient, keys: Any, recs: Recs) -> None:
        unknown = []
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                unknown.append(key)
                continue
            if target.id == FIRE_AND_FORGET and ts.state in ("memory", "erred"):
                continue  # already done: nothing to keep alive
            self._want(target, ts, recs)
        if unknown and not target.hold:
            # a future for a key nobody holds (released, forgotten by a restart): it
            # would otherwise wait forever
            text = "the scheduler does not know this key (it was released or forgotten, e.g. by a restart)"
            self._out.append(ToClient(target.id, m.CancelledKeys(tuple(unknown), "unknown-key", text)))

    def _cancel_keys(self, cs: SchedClient, msg: m.CancelKeys, recs: Recs, sid: str) -> None:
        reason = msg.reason or "unknown"
        for key in msg.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            if msg.force or ts.who_wants <= {cs}:
                self._cancel(ts, reason, msg.msg, recs)
            elif cs in ts.who_wants:
                without_member(ts.who_wants, cs)
                cs.wants.discard(ts)

    def _retry_keys(self, cs: SchedClient, msg: m.RetryKeys, recs: Recs, sid: str) -> None:
        roots: set[SchedTask] = set()
        stack = [self.tasks[k] for k in msg.keys if k in self.tasks]
        while stack:
            ts = stack.pop()
            if ts.state != "erred" or ts in roots:
                continue
            roots.add(ts)
            stack.extend(ts.dependencies)
        for ts in roots:
            self._transition(ts, "released", sid, recs)
        for ts in roots:
            for c in ts.who_wants:
                if not c.hold:
                    self._out.append(ToClient(c.id, m.TaskRetried(ts.key)))
            if ts.who_wants:
                recs[ts.key] = "waiting"  # erred dependencies follow as they are needed

    def _update_data(self, cs: SchedClient, msg: m.UpdateData, recs: Recs, sid: str) -> None:
        for key, addrs in msg.who_has.items():
            holders = [self.workers[a] for a in addrs if a in self.workers]
            if not holders:
                self._out.append(
                    ToClient(cs.id, m.CancelledKeys((key,), "scatter failed", "no worker holds it"))
                )
                continue
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = SchedTask(key)
            elif ts.state not in ("memory", "released"):
                self._transition(ts, "released", sid, recs)
            ts.who_wants = with_member(ts.who_wants, cs)
            cs.wants.add(ts)
            nbytes, type_name = msg.nbytes.get(key, 0), msg.types.get(key)
            if ts.state == "memory":  # scattered again: more holders, no transition
                self._put_in_memory(ts, "memory", holders, nbytes, type_name, recs)
            else:
                self._t_released_memory(ts, sid, recs, holders, nbytes, type_name)
    _CLIENT_HANDLERS: dict[type, Callable] = {
        m.UpdateGraph: _update_graph,
        m.ReleaseKeys: _release_keys,
        m.DesireKeys: _desire_keys,
        m.CancelKeys: _cancel_keys,
        m.RetryKeys: _retry_keys,
        m.UpdateData: _update_data,
    }

    #: the client-side events this mixin handles (merged into `SchedulerState`'s table)
    EVENT_HANDLERS: dict[type, Callable] = {
        AddClient: _handle_add_client,
        RemoveClient: _handle_remove_client,
        ClientMsg: _handle_client_msg,
        HoldKeys: _handle_hold_keys,
        ReleaseHold: _handle_release_hold,
        WantKeys: _handle_want_keys,
        Restart: _handle_restart,
    }


def _missing_text(key: Key, dep: Key) -> str:
    return (
        f"Task {key!r} depends on {dep!r}, which the scheduler does not know "
        "(never submitted, or already released)"
    )
