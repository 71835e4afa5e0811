"""How a client shows itself: `repr`, the notebook's HTML and the dashboard link.
"""

from __future__ import annotations


from shoal import _loop



class ReprMethods:
    """The client's `__repr__`, `_repr_html_` and `dashboard_link` (a mixin of `Client`)."""

    @property
    def dashboard_link(self) -> str:
        link = getattr(self.cluster, "dashboard_link", "") if self.cluster is not None else ""
        if link:
            return link
        port = (self._identity.get("services") or {}).get("dashboard")
        if not port or not self._address:
            return ""
        from shoal.comm.addressing import parse_address
        from shoal.utils import format_dashboard_link

        scheme, loc = parse_address(self._address)
        host = "127.0.0.1" if scheme == "inproc" else loc.rsplit(":", 1)[0].strip("[]")
        return format_dashboard_link(host, port)

    def __repr__(self) -> str:
        """``<Client: 'tcp://…' processes=2 threads=4, memory=8.00 GiB>`` (the scheduler's
        current totals, asked for with a short timeout when called off the loop), or
        ``<Client: 'tcp://…' closed>`` once closing or closed."""
        addr = self._address
        if self.status in ("newly-created", "connecting") and not addr:
            return "<Client: No scheduler connected>"
        if self.status in ("closing", "closed"):
            return f"<Client: {addr!r} {self.status}>" if addr else f"<Client: {self.status}>"
        info = self._fresh_identity()
        if info.get("workers") is not None or "n_workers" in info:
            from shoal.utils import format_bytes

            n = info.get("n_workers", len(info.get("workers") or ()))
            threads = info.get("total_threads", 0)
            mem = format_bytes(info.get("total_memory", 0))
            return f"<Client: {addr!r} processes={n} threads={threads}, memory={mem}>"
        return f"<Client: scheduler={addr!r}>"

    def _fresh_identity(self) -> dict:
        """The scheduler's identity now (bounded wait), else the last one seen."""
        if self.status == "running" and self.scheduler_comm is not None and not self.asynchronous:

            async def fetch() -> dict:
                assert self.scheduler_comm is not None
                return await self.scheduler_comm.request("identity", n_workers=-1)

            try:
                self._identity = _loop.sync(self._aloop, fetch, callback_timeout=2)
            except Exception:  # noqa: BLE001 - a repr must not fail: show what is cached
                pass
        return self._identity or {}

    def _repr_html_(self) -> str:
        from shoal.diagnostics.reprs import client_html

        closed = self.status in ("closing", "closed")
        return client_html(self, {} if closed else self._fresh_identity(), self._address)

