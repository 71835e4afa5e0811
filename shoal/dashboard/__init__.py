"""The scheduler's web dashboard (`Scheduler(dashboard_address=...)`): live status page,
worker and task pages, JSON, `/health` and Prometheus `/metrics`. See `app.py`."""

from shoal.dashboard.app import Dashboard, parse_dashboard_address

__all__ = ["Dashboard", "parse_dashboard_address"]
