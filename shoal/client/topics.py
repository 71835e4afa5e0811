"""Topic events: what users log (`log_event`, `get_events`) and subscribe to
(`subscribe_topic`), and the handlers that receive the scheduler's `topic-event`
messages on the client's loop (remote `print`/`warn`, worker restarts).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from shoal.protocol import messages as m

logger = logging.getLogger("shoal.client")
#: what nannies report of their workers' deaths (`shoal.log_terminal.handle_worker_alert`)
WORKER_ALERT_TOPICS = ("worker-restart-memory", "worker-restart")


def default_handlers() -> dict[str, Any]:
    """The handlers every client outside a task starts with: what tasks `shoal.print` /
    `shoal.warn` reaches the user's terminal, and workers' restarts are reported."""
    from shoal.diagnostics.remote_print import handle_print, handle_warn
    from shoal.log_terminal import handle_worker_alert

    handlers: dict[str, Any] = {"print": handle_print, "warn": handle_warn}
    for topic in WORKER_ALERT_TOPICS:
        handlers[topic] = handle_worker_alert
    return handlers


class TopicMethods:
    """The client's topic event methods (a mixin of `Client`)."""

    def log_event(self, topic: Any, msg: Any) -> Any:
        """Log `msg` (msgpack-serializable data) on the scheduler under `topic` (a name or
        a list of names); subscribers of the topic receive it."""
        from shoal.protocol.events import check_event_message

        check_event_message(msg)
        topic = topic if isinstance(topic, str) else [str(t) for t in topic]
        return self._request("log_event", topic=topic, msg=msg)

    def get_events(self, topic: str | None = None) -> Any:
        """Events of `topic` as a tuple of ``(timestamp, msg)``; with no topic, a dict of
        every topic's events."""

        async def call() -> Any:
            assert self.scheduler_comm is not None
            events = await self.scheduler_comm.request("get_events", topic=topic)
            if topic is not None:
                return tuple(tuple(e) for e in events)
            return {t: tuple(tuple(e) for e in evs) for t, evs in events.items()}

        return self.sync(call)

    def subscribe_topic(self, topic: str, handler: Any) -> None:
        """Call `handler((timestamp, msg))` (a function or a coroutine function) on this
        client's event loop for every event logged on `topic` from now on. Subscribing
        again replaces the handler."""
        self._event_handlers[topic] = handler
        self._call_in_loop(self._notify_scheduler, "subscribe_topic", [topic])

    def unsubscribe_topic(self, topic: str) -> None:
        if topic not in self._event_handlers:
            raise ValueError(f"No event handler known for topic {topic}.")
        del self._event_handlers[topic]
        self._call_in_loop(self._notify_scheduler, "unsubscribe_topic", [topic])

    def _notify_scheduler(self, name: str, topics: list) -> None:
        self.outbox.flush()
        peer = self.scheduler_comm
        if peer is not None and not peer.closed and self.status == "running":
            peer.notify(name, topics=topics)

    def _handle_event(self, msg: m.TopicEvent) -> None:
        handler = self._event_handlers.get(msg.topic)
        if handler is None:
            return
        event = (msg.time, msg.msg)
        try:
            if inspect.iscoroutinefunction(handler):
                self._own(_log_failure(handler(event), msg.topic))
            else:
                handler(event)
        except Exception:
            logger.exception("event handler for topic %r failed", msg.topic)


async def _log_failure(coro: Any, topic: str) -> None:
    try:
        await coro
    except Exception:
        logger.exception("event handler for topic %r failed", topic)

