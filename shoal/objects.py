"""Small result types returned by the client: dicts with a notebook repr."""

from __future__ import annotations

import html


class _HTMLDict(dict):
    _title = ""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in self.items()
        )
        return f"<b>{self._title}</b><table>{rows}</table>"


class SchedulerInfo(_HTMLDict):
    _title = "Scheduler"


class WhoHas(_HTMLDict):
    _title = "Who has"


class HasWhat(_HTMLDict):
    _title = "Has what"
