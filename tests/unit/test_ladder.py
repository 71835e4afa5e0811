"""The layer ladder of docs/design.md, enforced: every import in `shoal/` (function-level
ones included) goes down the ladder or stays on its rung, and no `never` rule is broken.

The drawing is read from the "Layers" section of docs/design.md: lines ``Ln  path path``
(paths of packages or modules, ``{a,b}`` alternatives allowed, the most specific path
wins) and ``never  path -> path``. Static (AST) only: nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shoal"
DESIGN = ROOT / "docs" / "design.md"


# ------------------------------------------------------------------ the modules and their imports


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(name: str, known: dict) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(known: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported shoal module: line of the first such import}."""
    out: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_package else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                # `from shoal import config` imports the module shoal.config
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for t in targets:
                if t == "shoal" or t.startswith("shoal."):
                    mod = _target(t, known)
                    if mod is not None and mod != name:
                        edges.setdefault(mod, node.lineno)
        out[name] = edges
    return out


# ------------------------------------------------------------------ the drawing


def _expand(token: str) -> list[str]:
    m = re.search(r"\{([^}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m.group(1).split(",") for x in _expand(token[: m.start()] + alt + token[m.end() :])]


def _dotted(path: str) -> str:
    path = path.removesuffix(".py")
    if path.endswith("/__init__"):
        path = path[: -len("/__init__")]
    return path.replace("/", ".")


def ladder(text: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(dotted path -> rung, higher is higher; [(from, to)] never rules) of the drawing in
    the "Layers" section of `text`."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    rungs: dict[str, int] = {}
    never: list[tuple[str, str]] = []
    order: list[str] = []
    current: str | None = None
    for line in block.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if head == "never":
            m = re.fullmatch(r"\s*never\s+(\S+)\s*->\s*(\S+)\s*", line)
            assert m, f"bad never rule: {line!r}"
            never.append((_dotted(m.group(1)), _dotted(m.group(2))))
            continue
        if re.fullmatch(r"L0*\d+", head):
            current = head
            order.append(head)
        if current is None:
            continue
        for token in re.findall(r"shoal[\w/{},.]*", line):
            for path in _expand(token.rstrip(".,")):
                rungs[_dotted(path)] = len(order) - 1  # position from the top, for now
    # the drawing lists the highest rung first: number them so that higher is higher
    bottom = len(order) - 1
    return {p: bottom - r for p, r in rungs.items()}, never


def rung_of(module: str, rungs: dict[str, int]) -> int | None:
    """The rung of the most specific entry naming `module` or a package holding it
    (the root package's entry, ``shoal/__init__.py``, names that module alone)."""
    name = module
    while name and name != "shoal":
        if name in rungs:
            return rungs[name]
        name = name.rpartition(".")[0]
    return rungs.get("shoal") if module == "shoal" else None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(edges: dict[str, dict[str, int]], rungs: dict[str, int], never: list) -> list[str]:
    out = []
    for src, targets in sorted(edges.items()):
        rs = rung_of(src, rungs)
        for dst, line in sorted(targets.items()):
            rd = rung_of(dst, rungs)
            if rs is None or rd is None:
                continue  # reported by the coverage test
            if rd > rs:
                out.append(f"{src} (L{rs}) imports {dst} (L{rd}) at line {line}: up the ladder")
            for a, b in never:
                if _under(src, a) and _under(dst, b):
                    out.append(f"{src} imports {dst} at line {line}: never {a} -> {b}")
    return out


@pytest.fixture(scope="module")
def drawing():
    return ladder(DESIGN.read_text())


@pytest.fixture(scope="module")
def graph():
    return imports(modules())


# ------------------------------------------------------------------ the tests


def test_every_module_is_in_the_drawing(drawing):
    rungs, _ = drawing
    missing = [m for m in modules() if rung_of(m, rungs) is None]
    assert not missing, f"modules not placed in docs/design.md's ladder: {missing}"


def test_the_drawing_names_only_existing_modules(drawing):
    rungs, never = drawing
    known = modules()
    packages = {name.rpartition(".")[0] for name in known} | set(known)
    stale = [p for p in rungs if p not in packages] + [p for rule in never for p in rule if p not in packages]
    assert not stale, f"docs/design.md's ladder names what does not exist: {stale}"


def test_no_import_goes_up_the_ladder_or_breaks_a_never_rule(drawing, graph):
    rungs, never = drawing
    assert violations(graph, rungs, never) == []


def test_function_level_imports_are_seen():
    known = modules()
    # `Client._start` reaches `LocalCluster` through a provider, not an import; the
    # worker imports `shoal.worker.dump` inside a handler (admin.py)
    edges = imports(known)
    assert "shoal.worker.dump" in edges["shoal.worker.admin"]
    assert "shoal.deploy.local" not in edges["shoal.client.client"]


def test_a_wrong_edge_fails(drawing, graph):
    rungs, never = drawing
    bad = {k: dict(v) for k, v in graph.items()}
    bad["shoal.scheduler.state"]["shoal.client.client"] = 1  # pure core importing the client
    bad["shoal.worker.server"]["shoal.scheduler.events"] = 2  # worker importing the scheduler
    found = violations(bad, rungs, never)
    assert any("shoal.scheduler.state (L" in v and "up the ladder" in v for v in found)
    assert any("never shoal.worker -> shoal.scheduler" in v for v in found)


def test_the_parser_reads_rungs_and_rules():
    text = """## Layers\n```\nL2  shoal/a  shoal/b/{c,d}.py\nL1  shoal/b\nnever shoal/a -> shoal/b\n```\n## Next"""
    rungs, never = ladder(text)
    assert rungs == {"shoal.a": 1, "shoal.b.c": 1, "shoal.b.d": 1, "shoal.b": 0}
    assert never == [("shoal.a", "shoal.b")]
    assert rung_of("shoal.b.c", rungs) == 1 and rung_of("shoal.b.x", rungs) == 0
    assert rung_of("shoal.new", rungs) is None  # not placed: the coverage test names it
    assert rung_of("shoal.new", {**rungs, "shoal": 5}) is None  # the root entry is no catch-all
