"""`distributed.deploy.spec`'s helper functions: `run_spec` (start the processes a spec
describes) and `close_clusters` (close every cluster still open, at exit)."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.deploy.spec import SpecCluster, _start, import_cls

__all__ = ["close_clusters", "run_spec"]


async def run_spec(spec: dict[str, Any], *args: Any) -> dict[str, Any]:
    """Start `{name: {"cls": ..., "options": {...}}}` as `cls(*args, **options)`; the started
    objects by name."""
    workers = {name: import_cls(d["cls"])(*args, **d.get("options", {})) for name, d in spec.items()}
    await asyncio.gather(*(_start(w) for w in workers.values()))
    return workers





def close_clusters() -> None:
    """Close every `SpecCluster` of this process that is still open and closes on exit."""
    import gc

    for obj in gc.get_objects():
        if isinstance(obj, SpecCluster) and obj.status == "running" and obj.shutdown_on_close:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing at exit: one failure must not stop the others
                pass
