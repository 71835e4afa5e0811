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


# ------------------------------------------------------------------ the client

CLIENT_PACKAGE = PACKAGE / "client"
#: names that hold a Client outside shoal/client/
CLIENT_HOLDERS = {"client", "_client", "_bound_client", "c", "cl", "default", "own", "future"}


def client_private_members() -> set[str]:
    """Underscore members of `Client` (the facade and its mixins): methods and the
    attributes they set on ``self``."""
    names: set[str] = set()
    for path in CLIENT_PACKAGE.glob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                    names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _holder_name(v: ast.expr) -> str | None:
    if isinstance(v, ast.Call):  # `self._client()._x`
        v = v.func
    return v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None


def client_private_uses(source: str, private: set[str]) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in private:
            v = node.value
            name = _holder_name(v)
            if name in CLIENT_HOLDERS:
                out.append((node.lineno, f"{ast.unparse(v)}.{node.attr}"))
    return out


def test_no_private_member_of_a_client_is_used_outside_the_client_package():
    private = client_private_members()
    assert {"_aloop", "_inc_ref", "_own", "_address"} <= private  # the scan sees methods and attributes
    found = {
        str(p.relative_to(PACKAGE)): uses
        for p in sorted(PACKAGE.rglob("*.py"))
        if CLIENT_PACKAGE not in p.parents and (uses := client_private_uses(p.read_text(), private))
    }
    assert found == {}


def test_a_private_client_use_is_found():
    private = {"_flush", "_address"}
    assert client_private_uses("def f(client):\n    client._flush()\n", private) == [(2, "client._flush")]
    assert client_private_uses("self.client._address\n", private) == [(1, "self.client._address")]
    assert client_private_uses("self._client()._flush()\n", private) == [(1, "self._client()._flush")]
    assert client_private_uses("client.outbox.flush()\nclient._peer = 1\n", private) == []
