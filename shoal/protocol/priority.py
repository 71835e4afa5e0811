"""Task priorities as one int (pure): the encoding the scheduler keeps and sends to
workers with `compute-task`, and its way back to a tuple for people (dumps, the
dashboard)."""

from __future__ import annotations

__all__ = ["priority_parts", "priority_rank"]

#: bits for each of a priority's two counters (submission number, order in the graph)
_COUNTER_BITS = 40
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
#: a user priority is kept as fixed point with this many fractional bits (ints exactly)
_USER_FRACTION = 16


def priority_rank(priority: tuple) -> int:
    """One int that orders tasks exactly as their priority tuple
    ``(-user_priority, submission, graph_order)`` does (shorter tuples count the missing
    parts as 0; lower runs first). A tuple and its numbers cost about 100 bytes a task,
    this int about 36. Float user priorities keep 1/65536 resolution; counters are
    clamped to 40 bits."""
    n = len(priority)
    user = priority[0] if n else 0
    user = user << _USER_FRACTION if type(user) is int else round(float(user) * (1 << _USER_FRACTION))
    base = min(max(int(priority[1]), 0), _COUNTER_MAX) if n > 1 else 0
    order = min(max(int(priority[2]), 0), _COUNTER_MAX) if n > 2 else 0
    return (((user << _COUNTER_BITS) | base) << _COUNTER_BITS) | order


def priority_parts(rank: int) -> tuple:
    """The ``(-user_priority, submission, graph_order)`` tuple a `priority_rank` stands for
    (for people: dumps and the dashboard)."""
    order = rank & _COUNTER_MAX
    base = (rank >> _COUNTER_BITS) & _COUNTER_MAX
    user = rank >> (2 * _COUNTER_BITS)
    whole = user >> _USER_FRACTION
    return (whole if whole << _USER_FRACTION == user else user / (1 << _USER_FRACTION), base, order)
