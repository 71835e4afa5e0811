"""Published datasets, the scheduler side: the ``publish_*`` request handlers.

The scheduler keeps each dataset as an opaque `Pickled` (never unpickled there) plus the
keys of the futures it references; the named hold ``published-<name>`` (`HoldKeys`, no
client) keeps those keys, so their results outlive the publishing client. Unpublishing,
or overriding with `override=True`, lets go of them (`ReleaseHold`: the keys are then
released unless someone else holds them). A client getting a dataset is made to want its
keys (`WantKeys`) before the reply leaves. The client side is `shoal.datasets`.
"""

from __future__ import annotations

from typing import Any

from shoal.protocol.serialize import Pickled
from shoal.scheduler.events import HoldKeys, ReleaseHold, WantKeys
from shoal.scheduler.extension import SchedulerExtension
from shoal.sync.state import normalize_name

__all__ = ["DatasetServer"]


def _pseudo(name: Any) -> str:
    return f"published-{name}"


class DatasetServer(SchedulerExtension):
    """The scheduler's table of published datasets: name -> (Pickled, keys)."""

    def __init__(self, scheduler: Any):
        super().__init__(scheduler)
        self.datasets: dict[Any, tuple[Pickled, tuple]] = {}

    def handlers(self) -> dict[str, Any]:
        return {op: getattr(self, op) for op in ("publish_put", "publish_get", "publish_delete", "publish_list")}

    def _event(self, event_type: Any, *args: Any) -> None:
        sched = self.scheduler
        sched.stimulate(event_type(sched.new_stimulus_id("publish"), *args))

    async def publish_put(self, peer: Any, items: Any, override: bool = False) -> Any:
        """Store every ``[name, data, keys]`` of `items`, all or nothing. Returns the
        first name that already exists (nothing stored) when not `override`, else None."""
        entries = [(normalize_name(name), data, tuple(normalize_name(k) for k in keys)) for name, data, keys in items]
        if not override:
            for name, _, _ in entries:
                if name in self.datasets:
                    return {"exists": name}
        for name, data, keys in entries:
            pseudo = _pseudo(name)
            # want the new keys before dropping the old ones: keys shared by the old and
            # the new value must never be released in between
            if keys:
                self._event(HoldKeys, pseudo, keys)
            old = self.datasets.get(name)
            self.datasets[name] = (data, keys)
            if old is not None:
                dropped = tuple(k for k in old[1] if k not in set(keys))
                if dropped:
                    self._event(ReleaseHold, pseudo, dropped)
        return None

    async def publish_get(self, peer: Any, names: Any, strict: bool = True) -> list:
        """For each name, ``{"data": Pickled, "keys": [...]}`` or None. The calling
        client wants the keys before the reply leaves, so they cannot vanish meanwhile;
        with `strict`, a missing name makes it want nothing (the client will raise)."""
        entries = [self.datasets.get(normalize_name(name)) for name in names]
        deliver = not (strict and any(e is None for e in entries))
        alive = peer.role == "client" and self.scheduler.clients.get(peer.ident) is peer
        out: list = []
        for entry in entries:
            if entry is None:
                out.append(None)
                continue
            data, keys = entry
            if deliver and alive and keys:
                self._event(WantKeys, peer.ident, tuple(keys))
            out.append({"data": data, "keys": list(keys)} if deliver else {})
        return out

    async def publish_delete(self, peer: Any, names: Any) -> None:
        for name in names:
            name = normalize_name(name)
            if self.datasets.pop(name, None) is not None:
                self._event(ReleaseHold, _pseudo(name))

    async def publish_list(self, peer: Any) -> list:
        return sorted(self.datasets, key=str)
