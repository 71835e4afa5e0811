"""The worker state machine's fetching of dependencies from peers: which keys go in one
request to which holder (`_ensure_fetching`, at the end of every stimulus: many keys per
request, bounded in count and bytes), what a reply (`FetchDone`) or a scatter / replica
(`UpdateDataEvent`) changes, and handing a task back to the scheduler (`missing-data`)
when no holder of one of its inputs is left. A mixin of `WorkerState` (`state.py`). PURE.
"""

from __future__ import annotations

from collections.abc import Callable

from shoal.protocol import messages as m
from shoal.utils import Key
from shoal.worker.events import FetchDone, UpdateDataEvent
from shoal.worker.instructions import Fetch


class Fetching:
    """The fetch side of `WorkerState` (see the module docstring)."""

    def _fetch_done(self, ev: FetchDone) -> None:
        self.in_flight.pop(ev.worker, None)
        got: dict[Key, int] = {}
        transfer = (ev.start, ev.stop, ev.worker, sum(ev.nbytes.values())) if ev.stop else None
        for key in ev.requested:
            fs = self.fetch.get(key)
            if key in ev.data:
                value = ev.data[key]
                if fs is None:
                    continue  # nobody here needs it any more
                self.fetch.pop(key, None)
                if key in self.data:  # arrived another way meanwhile (update-data)
                    self._log(key, "flight", "released", "already held")
                if key not in self.data:
                    self.nbytes[key] = ev.nbytes.get(key, 0)
                    self.data[key] = value
                    got[key] = self.nbytes[key]
                    self._log(key, "flight", "memory")
                if fs is not None:
                    for tkey in fs.needed_by:
                        ts = self.tasks.get(tkey)
                        if ts is not None and ts.state == "waiting":
                            if transfer is not None:
                                if ts.transfers is None:
                                    ts.transfers = [transfer]
                                elif ts.transfers[-1] != transfer:
                                    ts.transfers.append(transfer)
                            ts.waiting_for.discard(key)
                            if not ts.waiting_for:
                                self._make_ready(ts)
                continue
            if fs is None:
                continue
            if fs.in_flight_from is not None:
                self._log(key, "flight", "fetch", ev.worker)  # cause: the peer that lacked it
            fs.in_flight_from = None
            if ev.worker in fs.holders:
                fs.holders.remove(ev.worker)
            fs.tried.append(ev.worker)
            if ev.failed:  # the peer is unreachable: it holds nothing we can use
                for other in self.fetch.values():
                    if ev.worker in other.holders:
                        other.holders.remove(ev.worker)
                        other.tried.append(ev.worker)
        if got:
            self._send(m.AddKeys(got))
        # dependencies with no holder left: hand their dependents back to the scheduler
        for key, fs in list(self.fetch.items()):
            if self.fetch.get(key) is not fs:
                continue  # dropped with a task handed back earlier in this loop
            if not fs.holders and fs.in_flight_from is None:
                del self.fetch[key]
                self._log(key, "fetch", "released", "no holder left")
                for tkey in fs.needed_by:
                    ts = self.tasks.get(tkey)
                    if ts is not None and ts.state == "waiting":
                        self._log(tkey, "waiting", "released", f"missing-data {key!r}")
                        self._drop_task(ts)
                        self._send(m.MissingData(tkey, ts.run_id, key, tuple(fs.tried)))

    def _update_data(self, ev: UpdateDataEvent) -> None:
        for key, value in ev.data.items():
            held = key in self.data
            self.nbytes[key] = ev.nbytes.get(key, 0)
            self.data[key] = value
            fs = self.fetch.pop(key, None)
            if fs is None:
                if not held:
                    self._log(key, "released", "memory")
            else:  # the fetch, if in flight, is ignored when it returns
                self._log(key, "fetch" if fs.in_flight_from is None else "flight", "memory")
            if fs is not None:
                for tkey in fs.needed_by:
                    ts = self.tasks.get(tkey)
                    if ts is not None and ts.state == "waiting":
                        ts.waiting_for.discard(key)
                        if not ts.waiting_for:
                            self._make_ready(ts)
        if ev.report and ev.data:
            self._send(m.AddKeys({key: self.nbytes[key] for key in ev.data}))

    def _ensure_fetching(self) -> None:
        if not self.fetch or self.paused:
            return
        by_peer: dict[str, list[Key]] = {}
        batch_bytes: dict[str, int] = {}
        for key, fs in self.fetch.items():
            if fs.in_flight_from is not None or not fs.holders:
                continue
            # prefer a peer we are already batching for, else the first holder
            peer = next((h for h in fs.holders if h in by_peer), fs.holders[0])
            if peer in self.in_flight or peer == self.address:
                continue
            batch = by_peer.setdefault(peer, [])
            size = batch_bytes.get(peer, 0)
            if not batch or (len(batch) < self.max_keys_per_fetch and size + fs.nbytes <= self.max_bytes_per_fetch):
                batch.append(key)
                batch_bytes[peer] = size + fs.nbytes
        for peer, keys in by_peer.items():
            for key in keys:
                self.fetch[key].in_flight_from = peer
                self._log(key, "fetch", "flight")
            self.in_flight[peer] = tuple(keys)
            self._out.append(Fetch(peer, tuple(keys)))

    #: the events this mixin handles (merged into `WorkerState`'s table)
    EVENT_HANDLERS: dict[type, Callable] = {
        FetchDone: _fetch_done,
        UpdateDataEvent: _update_data,
    }
