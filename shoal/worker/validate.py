"""The worker's invariants: `validate_state(state)` checks every one (live task states,
what waiting tasks wait for, executions handed to the pool, fetches in flight, resources,
actors, a failed spill pausing the worker) and raises `InvalidState` naming the first
broken one. Tests run it after every stimulus (`WorkerState(validate=True)`). PURE, read
only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.worker.state import WorkerState


class InvalidState(AssertionError):
    """`WorkerState.validate_state` found a broken invariant."""


def validate_state(st: WorkerState) -> None:
    """Check every invariant; raise `InvalidState` naming the first that fails."""

    def check(cond: bool, what: str, *about: Any) -> None:
        if not cond:
            raise InvalidState(f"{what}: {about!r}")

    for key, ts in st.tasks.items():
        check(ts.key == key, "key mismatch", ts)
        check(ts.state in ("waiting", "ready", "executing", "long-running"), "not a live task state", ts)
        if ts.state == "waiting":
            check(bool(ts.waiting_for), "waiting on nothing", ts)
            for dep in ts.waiting_for:
                check(dep not in st.data, "waiting for a key held here", ts, dep)
                check(dep in st.fetch and key in st.fetch[dep].needed_by, "waiting for a key not fetched", ts, dep)
        if ts.state in ("ready", "executing"):
            check(not ts.waiting_for, "ready or executing with dependencies missing", ts)
        if ts.state == "executing":
            check(st.executing.get(key) == ts.run_id, "executing but not handed to the pool", ts)
    # the queue-ahead bound shrinks as durations grow, so check against its maximum
    check(len(st.executing) <= st.nthreads * (1 + st.max_pool_ahead_per_thread), "too many executing")
    for peer, keys in st.in_flight.items():
        for key in keys:
            fs = st.fetch.get(key)
            check(fs is None or fs.in_flight_from in (peer, None), "in flight from another peer", key)
    for k, v in st.available_resources.items():
        check(0 <= v <= st.total_resources.get(k, 0), "resources out of bounds", k, v)
    for key in st.actors:
        check(key in st.data, "an actor without its proxy in data", key)
    if st.spill_error is not None:
        check(st.paused, "a failed spill leaves the worker paused")
