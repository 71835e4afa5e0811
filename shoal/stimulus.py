"""The one door of shoal's pure state machines (`SchedulerState`, `WorkerState`).

`StateMachine.handle_stimulus(*events)` hands one stimulus (a batch of events) to the
machine's `_handle(events)` and returns its instructions; it refuses to be entered
again while a stimulus runs (`ReentrantStimulus`: an observer's hook must not nest a
stimulus inside the current one). PURE: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from shoal.exceptions import ReentrantStimulus

__all__ = ["StateMachine"]


class StateMachine:
    """Base of a pure state machine: subclasses implement `_handle(events) -> list`."""

    __slots__ = ()

    #: True while `handle_stimulus` runs (the recursion guard); set on the instance
    _handling = False

    def handle_stimulus(self, *events: Any) -> list[Any]:
        if self._handling:
            raise ReentrantStimulus(f"handle_stimulus({events!r}) called while handling a stimulus")
        self._handling = True
        try:
            return self._handle(events)
        finally:
            self._handling = False

    def _handle(self, events: tuple) -> list[Any]:
        raise NotImplementedError
