"""Modules reach the scheduler and the workers only through their public members (the
extension door, `shoal/scheduler/extension.py` and `shoal/worker/extension.py`): no
``scheduler._x`` / ``worker._x`` outside the server modules themselves. Static (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shoal"
#: names that hold a Scheduler or a Worker in extension and helper code
HOLDERS = {"scheduler", "sched", "dask_scheduler", "worker", "dask_worker"}
OWNERS = {PACKAGE / "scheduler" / "server.py", PACKAGE / "worker" / "server.py"}


def private_uses(source: str) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            v = node.value
            name = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None
            if name in HOLDERS:
                out.append((node.lineno, f"{ast.unparse(v)}.{node.attr}"))
    return out


def test_no_private_member_of_a_scheduler_or_worker_is_used_across_modules():
    found = {
        str(p.relative_to(PACKAGE)): uses
        for p in sorted(PACKAGE.rglob("*.py"))
        if p not in OWNERS and (uses := private_uses(p.read_text()))
    }
    assert found == {}


def test_a_private_use_is_found():
    assert private_uses("def f(sched):\n    sched._stimulate([])\n") == [(2, "sched._stimulate")]
    assert private_uses("self.scheduler._sid\n") == [(1, "self.scheduler._sid")]
    assert private_uses("self.scheduler.stimulate()\n") == []
