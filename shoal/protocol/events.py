"""Event messages (`log_event`) are plain msgpack data: checked where they are logged."""

from __future__ import annotations

from typing import Any

import msgpack


def check_event_message(msg: Any) -> None:
    """Raise `TypeError` unless `msg` is msgpack-serializable (no pickles in events)."""
    try:
        msgpack.packb(msg)
    except Exception as e:  # msgpack raises several types
        raise TypeError(f"Message must be msgpack serializable. Got {type(msg)=} instead.") from e
