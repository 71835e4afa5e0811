"""The scheduler's event log: bounded per topic, pushed to subscribed clients.

PURE. `EventLog.log` appends ``(timestamp, msg)`` to each topic's ring buffer
(`shoal.scheduler.events-log-length` entries) and returns the deliveries to make: one
per client subscribed to that topic. The I/O shell timestamps, sends `TopicEvent`
messages and drops a client's subscriptions when it disconnects. Messages are plain
msgpack data, never pickles. Topics used by shoal itself: ``"all"`` and each worker
address (workers joining and leaving), each client id (a client's arrival; the topic is
dropped when the client leaves, so clients that come and go leave nothing behind but
their lines in ``"all"``), ``"print"`` and ``"warn"`` (`shoal.print` / `shoal.warn`
inside tasks). At most `max_topics` topics are kept: past that, a new topic pushes out
the one written longest ago (never ``"all"``, never one a client subscribes to), so a
stream of registrations that come and go cannot grow the log without bound; and at most
`max_events` events are kept over all topics (100,000, or `events-log-length` if that
is more), so neither can many topics each filled to their bound (``Client.log_event`` of an
authenticated peer).

A dict message (workers and clients coming and going, nearly all of the log on a busy
cluster) is kept flat, as ``(timestamp, key, value, key, value, ...)``: 80 bytes for a
two-item dict instead of 264 for the ``(timestamp, dict)`` pair, and `get` hands out a
new dict each time, so a reader cannot change what the log holds. Deliveries carry the
message as it was logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import chain
from typing import Any


#: topics kept at most (each a ring buffer; workers' topics outlive the workers)
MAX_TOPICS = 10_000

#: events kept at most over all topics (unless one topic may hold more)
MAX_EVENTS = 100_000


class EventLog:
    def __init__(self, length: int = 100_000, max_topics: int = MAX_TOPICS, max_events: int | None = None):
        self.length = length
        self.max_topics = max_topics
        #: events kept over all topics (`MAX_EVENTS`, or `length` if more): past it,
        #: the oldest event of the topic written longest ago goes
        self.max_events = max(length, MAX_EVENTS) if max_events is None else max_events
        #: topic -> its events; ordered from the topic written longest ago to the latest
        self.events: dict[str, deque[tuple[float, Any]]] = {}
        self.subscribers: dict[str, set[str]] = {}
        #: events held, over all topics
        self.total = 0

    def log(self, topics: str | Iterable[str], msg: Any, now: float) -> list[tuple[str, str, tuple]]:
        """Record `msg` under each topic; returns ``(client_id, topic, event)`` to send."""
        if isinstance(topics, str):
            topics = (topics,)
        event = (now, msg)
        kept = (now, *chain.from_iterable(msg.items())) if type(msg) is dict else event
        out = []
        events = self.events
        for topic in topics:
            buf = events.pop(topic, None)
            if buf is None:
                if len(events) >= self.max_topics:
                    self._push_out()
                buf = deque(maxlen=self.length)
            events[topic] = buf  # (re)inserted last: the latest written
            if len(buf) == buf.maxlen:
                self.total -= 1  # the append pushes its oldest out
            buf.append(kept)
            self.total += 1
            if self.total > self.max_events:
                self._drop_oldest()
            for client_id in self.subscribers.get(topic, ()):
                out.append((client_id, topic, event))
        return out

    def get(self, topic: str | None = None) -> Any:
        """`topic`'s events (a tuple, oldest first), or ``{topic: events}`` for all."""
        if topic is not None:
            return tuple(map(_event, self.events.get(topic, ())))
        return {t: tuple(map(_event, buf)) for t, buf in self.events.items()}

    def _push_out(self) -> None:
        """Drop the topic written longest ago that is neither "all" nor subscribed to."""
        for topic in self.events:
            if topic != "all" and topic not in self.subscribers:
                self.total -= len(self.events.pop(topic))
                return

    def _drop_oldest(self) -> None:
        """Drop the oldest event of the topic written longest ago (the topic too when
        that was its last)."""
        topic = next(iter(self.events))
        buf = self.events[topic]
        buf.popleft()
        self.total -= 1
        if not buf:
            del self.events[topic]

    def forget(self, topic: str) -> None:
        """Drop `topic`'s events (its subscribers stay)."""
        self.total -= len(self.events.pop(topic, ()))

    def subscribe(self, client_id: str, topics: Iterable[str]) -> None:
        for topic in topics:
            self.subscribers.setdefault(topic, set()).add(client_id)

    def unsubscribe(self, client_id: str, topics: Iterable[str] | None = None) -> None:
        """Drop `client_id`'s subscriptions to `topics` (all of them when None)."""
        for topic in list(self.subscribers) if topics is None else topics:
            subs = self.subscribers.get(topic)
            if subs is not None:
                subs.discard(client_id)
                if not subs:
                    del self.subscribers[topic]


def _event(kept: tuple) -> tuple:
    """``(timestamp, msg)`` of an event as `EventLog` keeps it (a dict message flat: of
    odd length)."""
    if len(kept) == 2:
        return kept
    return (kept[0], {kept[i]: kept[i + 1] for i in range(1, len(kept), 2)})
