"""The scheduler's transition table: every edge a task may take between states, each a
function `_t_<start>_<finish>` that is the only code writing that state, logged into the
story and shown to the observers. A mixin of `SchedulerState` (`state.py`); recommended
edges go through `_transition` (`_TRANSITIONS`), the direct ones are taken by the code
that has their arguments (`_DIRECT_TRANSITIONS`: placement, `task-finished`, scatter).
PURE.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from shoal.exceptions import InvalidTransition
from shoal.protocol import messages as m
from shoal.scheduler.instructions import ToWorker
from shoal.scheduler.records import (
    ACTIVE,
    EMPTY,
    Recs,
    SchedTask,
    SchedWorker,
    with_member,
    without_dependent,
    without_member,
)


class Transitions:
    """The edges of the task state machine (see the module docstring)."""

    def _transitions(self, recs: Recs, sid: str) -> None:
        tasks = self.tasks
        while recs:
            key, finish = recs.popitem()
            ts = tasks.get(key)
            if ts is not None:
                self._transition(ts, finish, sid, recs)

    def _transition(self, ts: SchedTask, finish: str, sid: str, recs: Recs) -> None:
        start = ts.state
        if start == finish:
            return
        if finish == "forgotten":
            # "forget if you can": release first, forget only once nothing refers to it
            if start != "released":
                if ts.who_wants or ts.n_waiters:
                    return
                self._transition(ts, "released", sid, recs)
                if ts.state != "released":
                    return
            if not self._forgettable(ts):
                return
            start = "released"
        func = self._TRANSITIONS.get((start, finish))
        if func is None:
            if (start, "released") in self._TRANSITIONS and ("released", finish) in self._TRANSITIONS:
                self._transition(ts, "released", sid, recs)
                self._transition(ts, finish, sid, recs)
                return
            raise InvalidTransition(ts.key, start, finish, self.story(ts.key))
        func(self, ts, sid, recs)
        self._log(ts, start, sid)

    def _log(self, ts: SchedTask, start: str, sid: str) -> None:
        self.transition_counter += 1
        self.story_log.append((ts.key, start, ts.state, sid, self.clock()))
        if self.observers:
            for obs in self.observers:
                obs.transition(ts, start, sid)

    def _t_released_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        if ts.spec is None:
            # data that only a client could provide, and it is gone
            self._cancel(ts, "lost-data", f"scattered data {ts.key!r} was lost", recs)
            return
        ts.state = "waiting"
        self._enter_active(ts)
        blamed = None
        n = 0
        for dts in ts.dependencies:
            state = dts.state
            if state == "memory":
                continue
            if state == "erred":
                blamed = dts
            n += 1
            if state == "released":
                recs[dts.key] = "waiting"
        ts.n_waiting = n
        if blamed is not None:
            self._blame(ts, blamed)
            recs[ts.key] = "erred"
        elif not n:
            recs[ts.key] = "queued"

    def _t_waiting_queued(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        if ts.n_waiting:  # a dependency was lost after this was recommended
            return
        ts.state = "queued"
        self.n_queued += 1
        self._tiebreak += 1
        heapq.heappush(self.queue, (ts.priority, self._tiebreak, ts))

    def _t_no_worker_queued(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_waiting_queued(ts, sid, recs)

    def _t_processing_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        """Rescheduled: worker lost, data missing, `Reschedule`, or a retry."""
        ws = ts.processing_on
        self._stop_processing(ts)
        if ws is not None and ws.address in self.workers:
            self._free_on.setdefault(ws, {})[ts.key] = None
        ts.state = "waiting"
        self._count_waiting(ts, recs)

    def _count_waiting(self, ts: SchedTask, recs: Recs) -> None:
        """Back to waiting inside the active states: recount missing dependencies."""
        n = 0
        for dts in ts.dependencies:
            if dts.state != "memory":
                n += 1
                if dts.state == "released":
                    recs[dts.key] = "waiting"
        ts.n_waiting = n
        if not n:
            recs[ts.key] = "queued"

    def _t_waiting_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.state = "erred"
        ts.n_waiting = 0
        self._erred(ts, recs)

    def _t_processing_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self._stop_processing(ts)
        ts.state = "erred"
        ts.exception_blame = None
        self._erred(ts, recs)

    def _erred(self, ts: SchedTask, recs: Recs) -> None:
        for dts in ts.dependents:
            if dts.state in ("waiting", "queued", "no-worker"):
                self._blame(dts, ts)
                recs[dts.key] = "erred"
        self._leave_active(ts, recs)  # every way into erred starts from an active state
        self._report_done(ts, self._erred_msg(ts) if ts.who_wants else None, recs)

    def _t_queued_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.n_queued -= 1
        self._t_waiting_erred(ts, sid, recs)

    def _t_no_worker_erred(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_waiting_erred(ts, sid, recs)

    def _t_to_released(self, ts: SchedTask, recs: Recs) -> None:
        if ts.state in ACTIVE:
            self._leave_active(ts, recs)
        ts.state = "released"
        ts.n_waiting = 0
        if self._forgettable(ts):
            recs[ts.key] = "forgotten"

    def _t_waiting_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self._t_to_released(ts, recs)

    def _t_queued_waiting(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        """A dependency of a queued task was lost: wait for it again."""
        self.n_queued -= 1
        ts.state = "waiting"  # its heap entry goes stale and is skipped
        self._count_waiting(ts, recs)

    def _t_queued_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.n_queued -= 1
        self._t_to_released(ts, recs)  # its heap entry goes stale and is skipped

    def _t_no_worker_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        self.unrunnable.discard(ts)
        self._t_to_released(ts, recs)

    def _t_processing_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ws = ts.processing_on
        self._stop_processing(ts)
        if ws is not None:
            self._free_on.setdefault(ws, {})[ts.key] = None
        self._t_to_released(ts, recs)

    def _t_memory_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        for ws in ts.who_has:
            ws.has_what.discard(ts)
            if ts.actor:
                without_member(ws.actors, ts)
            ws.nbytes -= max(ts.nbytes, 0)
            self._free_on.setdefault(ws, {})[ts.key] = None
        ts.who_has = EMPTY
        # dependents that still need this key (it was lost) must wait for it again
        for dts in ts.dependents:
            if dts.state == "waiting":
                dts.n_waiting += 1
            elif dts.state in ("queued", "processing"):
                recs[dts.key] = "waiting"
        self._t_to_released(ts, recs)

    def _t_erred_released(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.exception = ts.traceback = ts.exception_blame = None
        ts.exception_text = ""
        self._t_to_released(ts, recs)

    def _t_released_forgotten(self, ts: SchedTask, sid: str, recs: Recs) -> None:
        ts.state = "forgotten"
        del self.tasks[ts.key]
        if self.suspicious:
            self.suspicious.pop(ts.key, None)
        for dts in ts.dependencies:
            dts.dependents = without_dependent(dts.dependents, ts)
            if dts.state == "released" and self._forgettable(dts):
                recs[dts.key] = "forgotten"
            elif not dts.n_waiters and not dts.who_wants and dts.state in ("memory", "erred"):
                recs[dts.key] = "forgotten"
        ts.dependencies = ()

    _TRANSITIONS: dict[tuple[str, str], Callable[..., None]] = {
        ("released", "waiting"): _t_released_waiting,
        ("released", "forgotten"): _t_released_forgotten,
        ("waiting", "queued"): _t_waiting_queued,
        ("waiting", "erred"): _t_waiting_erred,
        ("waiting", "released"): _t_waiting_released,
        ("queued", "erred"): _t_queued_erred,
        ("queued", "waiting"): _t_queued_waiting,
        ("queued", "released"): _t_queued_released,
        ("no-worker", "queued"): _t_no_worker_queued,
        ("no-worker", "erred"): _t_no_worker_erred,
        ("no-worker", "released"): _t_no_worker_released,
        ("processing", "waiting"): _t_processing_waiting,
        ("processing", "erred"): _t_processing_erred,
        ("processing", "released"): _t_processing_released,
        ("memory", "released"): _t_memory_released,
        ("erred", "released"): _t_erred_released,
    }

    # ------------------------------------------------------------------ direct edges

    def _t_released_memory(
        self, ts: SchedTask, sid: str, recs: Recs, holders: list[SchedWorker], nbytes: int, type_name: str | None
    ) -> None:
        """Data a client placed on `holders` (scatter): logged, so progress bars, plugins
        and stories see scattered keys like computed ones."""
        ts.state = "memory"
        self._put_in_memory(ts, "released", holders, nbytes, type_name, recs)
        self._log(ts, "released", sid)

    def _t_processing_memory(self, ts: SchedTask, sid: str, recs: Recs, ws: SchedWorker, msg: m.TaskFinished) -> None:
        """`ts` finished on `ws` (`task-finished`)."""
        self._stop_processing(ts)
        ts.exception_blame = None
        if ts.actor:
            ws.actors = with_member(ws.actors, ts)
        ts.state = "memory"
        self._put_in_memory(ts, "processing", [ws], msg.nbytes, msg.type_name, recs, msg.inline)
        self._log(ts, "processing", sid)

    def _t_queued_no_worker(self, ts: SchedTask, sid: str) -> None:
        """No live worker may run `ts` (restrictions, resources): it waits for one."""
        ts.state = "no-worker"
        self.n_queued -= 1
        self.unrunnable.add(ts)
        self._log(ts, "queued", sid)

    def _t_queued_processing(self, ts: SchedTask, sid: str, ws: SchedWorker) -> None:
        """Dispatch `ts` to `ws` (`compute-task`)."""
        pending_free = self._free_on.get(ws)
        if pending_free:  # freed earlier in this stimulus: the new run must not be freed
            pending_free.pop(ts.key, None)
        self.n_queued -= 1
        ts.state = "processing"
        ts.processing_on = ws
        self._run_id += 1
        ws.processing[ts] = run_id = self._run_id
        who_has = {}
        nbytes = {}
        for dts in ts.dependencies:
            who_has[dts.key] = tuple(w.address for w in dts.who_has)
            nbytes[dts.key] = dts.nbytes
        assert ts.spec is not None
        self._out.append(
            ToWorker(
                ws.address,
                m.ComputeTask(
                    ts.key, run_id, ts.func, ts.run_spec, ts.priority, who_has, nbytes,
                    ts.resources, bool(ts.who_wants), ts.actor,
                ),
            )
        )  # fmt: skip
        self._log(ts, "queued", sid)


    #: edges taken directly by the code that has their arguments (the worker placement
    #: chose, a `task-finished` message, scattered data), each logged like any edge;
    #: `_transition` never takes them (placement decides when, not a recommendation)
    _DIRECT_TRANSITIONS: dict[tuple[str, str], Callable[..., None]] = {
        ("queued", "processing"): _t_queued_processing,
        ("queued", "no-worker"): _t_queued_no_worker,
        ("processing", "memory"): _t_processing_memory,
        ("released", "memory"): _t_released_memory,
    }
