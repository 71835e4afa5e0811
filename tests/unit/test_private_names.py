"""No module of `shoal/` uses another module's underscore names: neither imports
``from shoal.x import _y`` nor reaches ``obj._y`` on an object whose class lives
elsewhere. Static (AST), a companion of `test_public_doors.py` (which names the holders
of a Scheduler, a Worker and a Client).

What counts as "defined here": any function, class, attribute assigned (``x._y = ...``),
argument, or string (a ``__slots__`` entry) of the module itself; a mixin's methods use
``self._y`` of the class they are part of, which is not a crossing. Package-private
*modules* (``shoal._loop``, ``shoal._gc``, ``shoal._context``, ``shoal._names``) are
meant to be imported across the package; only names inside modules are checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shoal"
ROOT = PACKAGE.parent

#: underscore members of other libraries that shoal reads on purpose
FOREIGN = {
    "_mgr",  # pandas: a DataFrame's blocks, sized without dask.sizeof (worker/sizeof.py)
    "_values",  # pandas: a Series' array
    "_name",  # dask: a collection's graph name (`shoal/shuffle/dataframe.py`)
    "_meta",  # dask: a collection's empty prototype
    "_get_running_loop",  # asyncio: the running loop or None, without raising
    "_current_frames",  # sys
    "_getframe",  # sys
    "_exit",  # os
    "_name",  # dask: a collection's or an expression's name (what dask itself reads)
    "_fields",  # namedtuple / dataclass records
    "_asdict",
    "_replace",
}
#: crossings that exist and belong to another open piece of work; each must go, none
#: may be added (deploy/ is issue 16's, the client's privates are the client's)
KNOWN = {
    ("shoal/deploy/compat_helpers.py", "from shoal.deploy.spec import _start"),
    ("shoal/deploy/local.py", "from shoal.deploy.spec import _accepts"),
}
#: holders of a Client or a Future: `test_public_doors.py` checks those
CLIENT_HOLDERS = {"client", "_client", "_bound_client", "c", "cl", "default", "own", "future"}


def _defined(tree: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
            out.add(n.attr)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("_"):
            out.add(n.value)
    return out


def _is_module(package: str, name: str) -> bool:
    base = ROOT.joinpath(*package.split("."), name)
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _holder(v: ast.expr) -> str | None:
    if isinstance(v, ast.Call):
        v = v.func
    return v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None


def crossings(source: str) -> list[str]:
    tree = ast.parse(source)
    mine = _defined(tree)
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "shoal" and not n.level:
            out += [
                f"from {n.module} import {a.name}"
                for a in n.names
                if _private(a.name) and not _is_module(n.module, a.name)
            ]
        elif isinstance(n, ast.Attribute) and _private(n.attr) and n.attr not in mine and n.attr not in FOREIGN:
            v = n.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            if _holder(v) in CLIENT_HOLDERS:
                continue
            out.append(ast.unparse(n))
    return out


def test_no_module_uses_another_modules_underscore_names():
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("shoal/client/"):
            continue  # the client's own package (its privates: test_public_doors.py)
        found |= {(rel, use) for use in crossings(path.read_text())}
    assert found - KNOWN == set()


def test_a_crossing_is_found():
    assert crossings("from shoal.comm.core import _limited\n") == ["from shoal.comm.core import _limited"]
    assert crossings("def f(listener):\n    return listener._stopping\n") == ["listener._stopping"]
    # defined in the module itself (another instance of its own class): not a crossing
    assert crossings("class A:\n    def __init__(self):\n        self._x = 1\n    def f(self, o):\n        return o._x\n") == []
    assert crossings("from shoal import _gc\nimport shoal._loop\n") == []  # package-private modules
