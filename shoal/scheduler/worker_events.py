"""The scheduler's worker-side stimuli: workers joining and leaving, the messages workers
send (`task-finished`, `task-failed`, `missing-data`, steal responses, ...), and the
events extensions send about data and placement (`DropReplicas`, `SetRetiring`,
`SetRestrictions`, `Recompute`). A mixin of `SchedulerState` (`state.py`). PURE.
"""

from __future__ import annotations

from collections.abc import Callable

from shoal.exceptions import KilledWorker
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps
from shoal.scheduler.events import (
    AddWorker,
    DropReplicas,
    Recompute,
    RemoveWorker,
    SetRestrictions,
    SetRetiring,
    WorkerMsg,
)
from shoal.scheduler.instructions import ToClient
from shoal.scheduler.records import EMPTY, MAX_PREFIXES, Recs, SchedWorker, with_member, without_member


class WorkerEvents:
    """Handlers of the worker-side and extension events (see the module docstring)."""

    # ------------------------------------------------------------------ workers joining and leaving

    def _handle_add_worker(self, ev: AddWorker, recs: Recs) -> None:
        msg = ev.msg
        if msg.address in self.workers:
            return
        self.workers[msg.address] = SchedWorker(msg, self.clock())
        for ts in self.unrunnable:
            recs[ts.key] = "queued"

    def _handle_remove_worker(self, ev: RemoveWorker, recs: Recs) -> None:
        ws = self.workers.pop(ev.address, None)
        if ws is None:
            return
        self._free_on.pop(ws, None)
        for ts in ws.has_what:
            without_member(ts.who_has, ws)
            if ts.who_has and ts.who_wants and ts.state == "memory":
                # clients fetching it from the lost worker learn where it still is
                moved = m.KeyMoved(ts.key, tuple(w.address for w in ts.who_has))
                self._out.extend(ToClient(c.id, moved) for c in ts.who_wants if not c.hold)
            if ts in ws.actors:
                # the object and its state are gone; proxies elsewhere point at nothing
                text = f"the worker {ws.address} holding actor {ts.key!r} was lost ({ev.reason})"
                self._cancel(ts, "lost-actor", text, recs)
            elif not ts.who_has and ts.state == "memory":
                self._lost(ts, recs, f"worker {ws.address} was lost ({ev.reason})")
        ws.has_what.clear()
        ws.actors = EMPTY
        for ts in list(ws.processing):
            if ts in ws.started:
                n = self.suspicious[ts.key] = self.suspicious.get(ts.key, 0) + 1
                if n > self.allowed_failures:
                    exc = KilledWorker(ts.key, ws.address, self.allowed_failures, ev.reason)
                    ts.exception, ts.traceback, ts.exception_text = dumps(exc), None, str(exc)
                    self._transition(ts, "erred", ev.stimulus_id, recs)
                    continue
            self._transition(ts, "waiting", ev.stimulus_id, recs)

    def _handle_worker_msg(self, ev: WorkerMsg, recs: Recs) -> None:
        ws = self.workers.get(ev.address)
        if ws is None:
            return  # a message from a worker we already removed: stale
        self._WORKER_HANDLERS[type(ev.msg)](self, ws, ev.msg, recs, ev.stimulus_id)

    # worker messages

    def _task_finished(self, ws: SchedWorker, msg: m.TaskFinished, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ws.processing.get(ts) != msg.run_id:
            if ts is None or ws not in ts.who_has:
                self._free_on.setdefault(ws, {})[msg.key] = None
            return
        duration = msg.stop - msg.start
        if self._seen_durations:
            self.avg_duration = 0.9 * self.avg_duration + 0.1 * duration
        else:
            self.avg_duration, self._seen_durations = duration, True
        durations = self.prefix_durations
        known = durations.get(ts.prefix)
        if known is not None:
            durations[ts.prefix] = 0.5 * known + 0.5 * duration
        elif len(durations) < MAX_PREFIXES:
            durations[ts.prefix] = duration
        self._t_processing_memory(ts, sid, recs, ws, msg)

    def _task_failed(self, ws: SchedWorker, msg: m.TaskFailed, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ws.processing.get(ts) != msg.run_id:
            return
        if ts.retries > 0:
            ts.retries -= 1
            self._transition(ts, "waiting", sid, recs)
            return
        ts.exception, ts.traceback, ts.exception_text = msg.exception, msg.traceback, msg.text
        self._transition(ts, "erred", sid, recs)

    def _missing_data(self, ws: SchedWorker, msg: m.MissingData, recs: Recs, sid: str) -> None:
        dts = self.tasks.get(msg.dep)
        if dts is not None:
            for addr in msg.holders:
                holder = self.workers.get(addr)
                if holder is not None and holder in dts.who_has:
                    without_member(dts.who_has, holder)
                    holder.has_what.discard(dts)
            if dts.state == "memory" and not dts.who_has:
                self._lost(dts, recs, "no worker holds it any more")
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)

    def _reschedule(self, ws: SchedWorker, msg: m.RescheduleTask, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)

    def _task_started(self, ws: SchedWorker, msg: m.TaskStarted, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        for key, run_id in zip(msg.keys, msg.run_ids):
            ts = tasks.get(key)
            if ts is not None and ws.processing.get(ts) == run_id:
                ws.started = with_member(ws.started, ts)

    def _long_running(self, ws: SchedWorker, msg: m.LongRunning, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is not None and ws.processing.get(ts) == msg.run_id:
            ws.long_running = with_member(ws.long_running, ts)

    def _steal_response(self, ws: SchedWorker, msg: m.StealResponse, recs: Recs, sid: str) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or self.stealing.get(ts) is not ws:
            return
        del self.stealing[ts]
        if msg.released and ws.processing.get(ts) == msg.run_id:
            self._transition(ts, "waiting", sid, recs)  # -> queued -> the idle worker
        elif not msg.released:
            self.steal_refused.add(ts)

    def _worker_status(self, ws: SchedWorker, msg: m.WorkerStatus, recs: Recs, sid: str) -> None:
        ws.paused = msg.status == "paused"

    def _add_keys(self, ws: SchedWorker, msg: m.AddKeys, recs: Recs, sid: str) -> None:
        for key, nbytes in msg.nbytes.items():
            ts = self.tasks.get(key)
            if ts is None or ts.state != "memory":
                self._free_on.setdefault(ws, {})[key] = None
                continue
            if ws not in ts.who_has:
                ts.who_has = with_member(ts.who_has, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)

    def _handle_drop_replicas(self, ev: DropReplicas, recs: Recs) -> None:
        tasks, workers = self.tasks, self.workers
        for key, address in ev.replicas:
            ts, ws = tasks.get(key), workers.get(address)
            if ts is None or ws is None or ts.state != "memory" or ws not in ts.who_has or len(ts.who_has) < 2:
                continue
            if any(dts.processing_on is ws for dts in ts.dependents):
                continue  # a task sent there reads its input from there
            without_member(ts.who_has, ws)
            ws.has_what.discard(ts)
            ws.nbytes -= max(ts.nbytes, 0)
            self._free_on.setdefault(ws, {})[key] = None

    def _handle_set_retiring(self, ev: SetRetiring, recs: Recs) -> None:
        for address in ev.addresses:
            ws = self.workers.get(address)
            if ws is not None:
                ws.retiring = ev.retiring

    def _handle_set_restrictions(self, ev: SetRestrictions, recs: Recs) -> None:
        for key, workers in ev.restrictions.items():
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.restrictions = frozenset(workers) if workers else None
            ts.loose = False
            if ts.state == "no-worker":
                recs[ts.key] = "queued"  # it may run somewhere now

    def _handle_recompute(self, ev: Recompute, recs: Recs) -> None:
        sid = ev.stimulus_id
        released = []
        for key in ev.keys:  # dependencies come before their dependents in `keys`
            ts = self.tasks.get(key)
            if ts is None or ts.spec is None:
                continue
            if ts.state == "memory":
                self._transition(ts, "released", sid, recs)
                released.append(ts)
            elif ts.state == "processing":
                self._transition(ts, "waiting", sid, recs)
        # dependents first: a dependent waiting again makes its released dependencies
        # needed (and recommends them), then those are made to wait too
        for ts in reversed(released):
            if ts.state == "released" and (ts.who_wants or ts.n_waiters):
                self._transition(ts, "waiting", sid, recs)

    _WORKER_HANDLERS: dict[type, Callable] = {
        m.TaskFinished: _task_finished,
        m.TaskFailed: _task_failed,
        m.TaskStarted: _task_started,
        m.MissingData: _missing_data,
        m.RescheduleTask: _reschedule,
        m.AddKeys: _add_keys,
        m.StealResponse: _steal_response,
        m.LongRunning: _long_running,
        m.WorkerStatus: _worker_status,
    }

    #: the worker-side and extension events this mixin handles (merged into
    #: `SchedulerState`'s table)
    EVENT_HANDLERS: dict[type, Callable] = {
        AddWorker: _handle_add_worker,
        RemoveWorker: _handle_remove_worker,
        WorkerMsg: _handle_worker_msg,
        DropReplicas: _handle_drop_replicas,
        SetRetiring: _handle_set_retiring,
        SetRestrictions: _handle_set_restrictions,
        Recompute: _handle_recompute,
    }
