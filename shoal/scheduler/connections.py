"""The scheduler's connections: a peer's packet checked at the edge (`_accepts`: the
messages its role may send, the requests it may call, registration first and once),
turned into one batch of events (`_on_messages`: registrations become `AddClient` /
`AddWorker`, the rest `ClientMsg` / `WorkerMsg`), and a connection's end turned into
`RemoveClient` / `RemoveWorker` (`_peer_gone`). The extensions' and plugins' hooks for
arrivals and graphs fire from here. A mixin of `shoal.scheduler.server.Scheduler`.
"""

from __future__ import annotations

import logging
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.requests import REQUESTS, check_request
from shoal.rpc import Peer
from shoal.scheduler.events import AddClient, AddWorker, ClientMsg, RemoveClient, RemoveWorker, WorkerMsg
from shoal.scheduler.records import FIRE_AND_FORGET
from shoal.utils import plural

logger = logging.getLogger("shoal.scheduler")


class Connections:
    """The connection side of `Scheduler` (see the module docstring)."""

    async def _handle_comm(self, comm: Any) -> None:
        peer = Peer(comm, self.handlers, self._on_messages, accepts=self._accepts)
        try:
            await peer.run()
        finally:
            await self._peer_gone(peer)

    async def _peer_gone(self, peer: Peer) -> None:
        if peer.role == "client" and self.clients.get(peer.ident) is peer:
            del self.clients[peer.ident]
            sid = self.new_stimulus_id("client-gone")
            self.stimulate(RemoveClient(sid, peer.ident))
            self.log_event(["all", peer.ident], {"action": "remove-client", "client": peer.ident})
            self.event_log.unsubscribe(peer.ident)
            self._call_extensions("remove_client", peer.ident, sid)
        elif peer.role == "worker" and self.workers.get(peer.ident) is peer:
            del self.workers[peer.ident]
            self.worker_metrics.pop(peer.ident, None)
            reason = self._exit_reasons.pop(peer.ident, "connection closed")
            sid = self.new_stimulus_id("worker-gone")
            self.stimulate(RemoveWorker(sid, peer.ident, reason))
            self._call_extensions("remove_worker", peer.ident, reason, sid)
            self._workers_changed.set()
            logger.info("Remove worker %s (%s)", peer.ident, reason)
            self.log_event(["all", peer.ident], {"action": "remove-worker", "worker": peer.ident, "reason": reason})
        elif peer.role == "nanny" and self.nannies.get(peer.ident) is peer:
            del self.nannies[peer.ident]
        try:
            await peer.close()
        except Exception:  # pragma: no cover
            pass

    def _registered(self, peer: Peer) -> Peer | None:
        """The connection registered under this peer's role and identity, if any."""
        registry = {"client": self.clients, "worker": self.workers, "nanny": self.nannies}.get(peer.role or "")
        return None if registry is None else registry.get(peer.ident)

    def _accepts(self, peer: Peer, msgs: list[m.Message]) -> str | None:
        """Why this decoded packet may not be handled (None: it may): each message must
        be one the peer's role may send, a request one its role may call with arguments
        of the right types (`shoal.protocol.requests`), and a registration must come
        first and once. Checked for the whole packet before any of it is handled."""
        role, ident = peer.role, peer.ident
        for msg in msgs:
            t = type(msg)
            if t is m.Request:
                kwargs = msg.kwargs
                if kwargs:
                    problem = check_request(msg.name, kwargs, role)
                    if problem is not None:
                        return problem
                elif role is None and msg.name not in REQUESTS:
                    return f"operation {msg.name!r} before saying who it is"
                elif msg.name in REQUESTS and role not in REQUESTS[msg.name].roles:
                    return f"a {role or 'connection that has not registered'} may not call {msg.name!r}"
                if msg.name == "register_nanny":
                    role = "nanny"
            elif t is m.Reply:
                continue
            elif msg.sender != role:
                if role is None and t is m.RegisterClient:
                    if msg.client_id in self.clients or msg.client_id == FIRE_AND_FORGET:
                        return f"client id {msg.client_id!r} is already registered"
                    role, ident = "client", msg.client_id
                elif role is None and t is m.RegisterWorker:
                    if msg.address in self.workers:
                        return f"worker {msg.address} registered twice"
                    role, ident = "worker", msg.address
                else:
                    return f"a {role or 'connection that has not registered'} may not send {msg.op!r}"
            elif t is m.RegisterClient or t is m.RegisterWorker:
                return f"{msg.op!r} on a connection that already registered"
            elif t is m.UpdateGraph:
                nf = len(msg.funcs)
                for task in msg.tasks:
                    if task[1] >= nf:
                        return f"task {task[0]!r} names function {task[1]} of {nf}"
            elif t is m.DesireKeys and msg.client_id != ident and msg.client_id != FIRE_AND_FORGET:
                return f"desire-keys for another client {msg.client_id!r}"
        return None

    def _on_messages(self, peer: Peer, msgs: list[m.Message]) -> None:
        sid = f"{peer.role or 'peer'}-{next(self._sid)}"
        events: list[Any] = []
        arrivals: list[Any] = []
        role = peer.role
        if role is not None and peer.closed and self._registered(peer) is not peer:
            return  # delivered late (after a request of its packet), after the peer left
        for msg in msgs:
            if role == "worker":
                events.append(WorkerMsg(sid, peer.ident, msg))
            elif role == "client":
                events.append(ClientMsg(sid, peer.ident, msg))
            elif type(msg) is m.RegisterClient:
                peer.role, peer.ident = "client", msg.client_id
                role = "client"
                self.clients[msg.client_id] = peer
                events.append(AddClient(sid, msg.client_id))
                arrivals.append(events[-1])
                self.log_event(["all", msg.client_id], {"action": "add-client", "client": msg.client_id})
            elif type(msg) is m.RegisterWorker:
                peer.role, peer.ident = "worker", msg.address
                role = "worker"
                self.workers[msg.address] = peer
                logger.info("Register worker %s (%s)", msg.address, plural(msg.nthreads, "thread"))
                if self.admin.admit_worker(msg.address, lambda msg=msg, sid=sid: self._admit(sid, msg)):
                    continue  # admitted once it ran the worker setups
                events.append(AddWorker(sid, msg))
                arrivals.append(events[-1])
                self._workers_changed.set()
                self.log_event(["all", msg.address], {"action": "add-worker", "worker": msg.address})
            else:
                logger.warning("message %s from %s before it said who it is; dropped", msg.op, peer.address)
        if events:
            try:
                self.stimulate(*events)
            except Exception as e:
                peer.reject(f"its messages made the state machine fail: {e!r}")
                return
            if self.plugin_host.wants("update_graph"):
                self._fire_update_graph(events)
            if arrivals:
                self._extension_events(arrivals)

    def _fire_update_graph(self, events: list[Any]) -> None:
        """The scheduler plugins' `update_graph` hook for the graphs of these (just
        handled) events."""
        host = self.plugin_host
        for ev in events:
            if type(ev) is ClientMsg and type(ev.msg) is m.UpdateGraph:
                msg = ev.msg
                annotations: dict[str, dict] = {}
                for key, _, _, _, _, ann in msg.tasks:
                    for name, value in (ann or {}).items():
                        annotations.setdefault(name, {})[key] = value
                host.fire(
                    "update_graph", self, client=ev.client_id, keys=set(msg.wanted),
                    tasks=[t[0] for t in msg.tasks], annotations=annotations,
                    priority={t[0]: tuple(t[4]) for t in msg.tasks}, stimulus_id=ev.stimulus_id,
                )  # fmt: skip

    def _extension_events(self, events: list[Any]) -> None:
        """The extensions' `add_worker` / `add_client` hooks for these (handled) events."""
        for ev in events:
            if type(ev) is AddWorker:
                self._call_extensions("add_worker", ev.msg.address, ev.stimulus_id)
            elif type(ev) is AddClient:
                self._call_extensions("add_client", ev.client_id, ev.stimulus_id)

    def _admit(self, sid: str, msg: m.RegisterWorker) -> None:
        events = [AddWorker(sid, msg)]
        self.stimulate(*events)
        self._workers_changed.set()
        self.log_event(["all", msg.address], {"action": "add-worker", "worker": msg.address})
        self._extension_events(events)
