"""Which workers count as gone because they have not been heard from (pure).

A worker whose process dies or whose host reboots closes its connection, and the
scheduler notices at once. A worker behind a cut link, or frozen solid, does not: its
connection looks open. Every worker therefore sends a heartbeat each
`shoal.worker.heartbeat-interval`, and the scheduler's I/O shell asks `expired` every
`check_interval(ttl)` which workers have been silent for longer than
`shoal.scheduler.worker-ttl`; it removes those as if their connection had closed.
"""

from __future__ import annotations

from collections.abc import Mapping


def expired(last_seen: Mapping[str, float], now: float, ttl: float) -> list[str]:
    """The workers (keys of `last_seen`, a worker -> time of its last message mapping)
    not heard from for more than `ttl` seconds at time `now`, oldest first."""
    cutoff = now - ttl
    return sorted((w for w, t in last_seen.items() if t < cutoff), key=last_seen.__getitem__)


def check_interval(ttl: float) -> float:
    """How often to look for expired workers: a tenth of the TTL, between 50 ms and 10 s,
    so a silent worker is removed within 1.1 TTL at most."""
    return min(max(ttl / 10, 0.05), 10.0)


def parse_ttl(value: object) -> float | None:
    """`shoal.scheduler.worker-ttl` in seconds; None (no TTL) for None, 0 or "none"."""
    from dask.utils import parse_timedelta

    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    seconds = float(value) if isinstance(value, (int, float)) else float(parse_timedelta(value, default="s"))
    if seconds < 0:
        raise ValueError(f"shoal.scheduler.worker-ttl must not be negative, got {value!r}")
    return seconds or None
