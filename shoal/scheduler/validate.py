"""The scheduler's invariants: `validate_state(state)` checks every one (symmetric
dependency links, reference counts against a recount, processing only with dependencies
in memory, who_has / has_what agreement, ...) and raises `InvalidState` naming the first
broken one with the task's story. Tests run it after every stimulus
(`SchedulerState(validate=True)`). PURE, read only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.scheduler.records import ACTIVE, STATES, SchedTask

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState


class InvalidState(AssertionError):
    """`validate_state` found a broken invariant."""


def validate_state(st: SchedulerState) -> None:
    """Raise `InvalidState` at the first broken invariant of `st`."""

    def check(cond: bool, what: str, ts: Any = None) -> None:
        if not cond:
            story = st.story(ts.key) if isinstance(ts, SchedTask) else []
            raise InvalidState(f"{what}: {ts!r}\nstory: {story[-20:]}")

    for key, ts in st.tasks.items():
        check(ts.key == key, "key mismatch", ts)
        check(ts.state in STATES, "unknown state", ts)
        for dts in ts.dependencies:
            check(dts.key in st.tasks and st.tasks[dts.key] is dts, "dependency forgotten", ts)
            check(ts in dts.dependents, "asymmetric dependency", ts)
        for dts in ts.dependents:
            check(ts in dts.dependencies, "asymmetric dependent", ts)
        active = sum(1 for d in ts.dependents if d.state in ACTIVE)
        check(ts.n_waiters == active, f"n_waiters {ts.n_waiters} != {active} active dependents", ts)
        for cs in ts.who_wants:
            check(ts in cs.wants, "who_wants/wants mismatch", ts)
        state = ts.state
        if state == "processing":
            ws = ts.processing_on
            check(ws is not None and ws.address in st.workers and ts in ws.processing, "processing on unknown worker", ts)
            check(all(d.state == "memory" for d in ts.dependencies), "processing before dependencies", ts)
        else:
            check(ts.processing_on is None, "processing_on set", ts)
        if state == "memory":
            check(bool(ts.who_has), "in memory nowhere", ts)
            for ws in ts.who_has:
                check(ts in ws.has_what, "who_has/has_what mismatch", ts)
        else:
            check(not ts.who_has, "who_has outside memory", ts)
        if state == "waiting":
            missing = sum(1 for d in ts.dependencies if d.state != "memory")
            check(ts.n_waiting == missing, f"n_waiting {ts.n_waiting} != {missing} missing dependencies", ts)
            check(missing > 0, "waiting on nothing: every dependency is in memory", ts)
        elif state != "erred":
            check(ts.n_waiting == 0, "n_waiting outside waiting", ts)
        if state == "queued":
            check(all(d.state == "memory" for d in ts.dependencies), "queued before dependencies", ts)
        if state == "no-worker":
            check(ts in st.unrunnable, "no-worker not in unrunnable", ts)
    queued = sum(1 for t in st.tasks.values() if t.state == "queued")
    check(st.n_queued == queued, f"n_queued {st.n_queued} != {queued}")
    for ts, victim in st.stealing.items():
        check(ts.state == "processing" and ts.processing_on is victim, "steal of a task not processing there", ts)
    for ws in st.workers.values():
        for ts in ws.processing:
            check(ts.processing_on is ws and ts.state == "processing", "worker processing mismatch", ts)
        for ts in ws.long_running:
            check(ts in ws.processing, "long-running task not processing here", ts)
        for ts in ws.started:
            check(ts in ws.processing, "started task not processing here", ts)
        for ts in ws.has_what:
            check(ws in ts.who_has, "has_what/who_has mismatch", ts)
        for ts in ws.actors:
            check(ts.actor and ts in ws.has_what, "actor not held by its worker", ts)
    for cs in st.clients.values():
        check(not cs.hold, "a hold among the clients", cs)
        for ts in cs.wants:
            check(cs in ts.who_wants and ts.key in st.tasks, "client wants unknown task", ts)
    for name, hs in st.holds.items():
        check(hs.hold and hs.id == name and name not in st.clients, "hold mismatch", hs)
        for ts in hs.wants:
            check(hs in ts.who_wants and ts.key in st.tasks, "hold wants unknown task", ts)
