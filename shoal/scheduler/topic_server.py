"""The scheduler's side of topic events (`Client.log_event`, `get_events`,
`subscribe_topic`): logged into `event_log` (`topics.py`), pushed to subscribed clients
and to plugins' `log_event` hooks. A mixin of `shoal.scheduler.server.Scheduler`.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from shoal.protocol import messages as m
from shoal.rpc import Peer


class TopicServer:
    """The topic-event side of `Scheduler` (see the module docstring)."""

    def log_event(self, topic: Any, msg: Any) -> None:
        """Log `msg` under `topic` (a name or a list of names) and push it to subscribers."""
        clients = self.clients
        if self.plugin_host.wants("log_event"):
            for name in [topic] if isinstance(topic, str) else topic:
                self.plugin_host.fire("log_event", name, msg)
        for client_id, name, event in self.event_log.log(topic, msg, time.time()):
            peer = clients.get(client_id)
            if peer is not None and not peer.closed:
                peer.send(m.TopicEvent(name, event[0], event[1]))

    async def _log_event(self, peer: Peer, topic: Any, msg: Any) -> None:
        if not isinstance(topic, str):
            topic = [str(t) for t in topic]
        # a copy in wire form (lists as tuples) on every transport; in-process peers
        # must not share mutable objects with the log
        self.log_event(topic, msgpack.unpackb(msgpack.packb(msg), use_list=False, strict_map_key=False))

    async def _get_events(self, peer: Peer, topic: str | None = None) -> Any:
        return self.event_log.get(topic)

    async def _subscribe_topic(self, peer: Peer, topics: Any) -> None:
        if peer.role != "client":
            raise ValueError("only clients may subscribe to topics")
        self.event_log.subscribe(peer.ident, topics)

    async def _unsubscribe_topic(self, peer: Peer, topics: Any) -> None:
        if peer.role == "client":
            self.event_log.unsubscribe(peer.ident, topics)
