"""Walk `distributed`'s public API and report what shoal lacks.

    python scripts/api_walk.py              # a summary and every gap
    python scripts/api_walk.py --markdown   # the gaps as a Markdown list (README)
    python scripts/api_walk.py --json       # machine-readable (tests/unit/test_api_walk.py)

For each public module of `distributed` that users and libraries import from (the list
below), the public names are its `__all__`, else the classes and functions it defines
(and, for a package, the ones it re-exports from distributed). Each name is looked up at
the same path under `shoal`: *missing* when absent, *stub* when shoal has it only as a
named `NotImplementedError` (see `shoal._unsupported`), and for callables the parameter
names distributed accepts that shoal's signature lacks are listed as *params*.

Needs `distributed` installed (a development-only dependency); shoal never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from typing import Any

#: the modules walked: what distributed's users and the ecosystem import from
MODULES = [
    "distributed",
    "distributed.client",
    "distributed.worker",
    "distributed.worker_client",
    "distributed.scheduler",
    "distributed.nanny",
    "distributed.core",
    "distributed.lock",
    "distributed.queues",
    "distributed.variable",
    "distributed.event",
    "distributed.semaphore",
    "distributed.multi_lock",
    "distributed.security",
    "distributed.utils",
    "distributed.versions",
    "distributed.actor",
    "distributed.exceptions",
    "distributed.recreate_tasks",
    "distributed.publish",
    "distributed.cfexecutor",
    "distributed.metrics",
    "distributed.sizeof",
    "distributed.objects",
    "distributed.cluster_dump",
    "distributed.protocol",
    "distributed.protocol.serialize",
    "distributed.diagnostics",
    "distributed.diagnostics.plugin",
    "distributed.diagnostics.progressbar",
    "distributed.diagnostics.progress",
    "distributed.diagnostics.memory_sampler",
    "distributed.diagnostics.task_stream",
    "distributed.deploy",
    "distributed.deploy.cluster",
    "distributed.deploy.spec",
    "distributed.deploy.local",
    "distributed.deploy.adaptive",
    "distributed.deploy.adaptive_core",
    "distributed.deploy.ssh",
    "distributed.deploy.subprocess",
]

#: names defined in those modules that are internal helpers in all but name (not walked)
INTERNAL = {
    "distributed.utils": {"is_kernel", "warn_on_duration", "wait_for", "recursive_to_dict"},
}


def public_names(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is not None:
        return sorted(set(names))
    is_package = hasattr(mod, "__path__")
    out = []
    for name, obj in vars(mod).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        where = getattr(obj, "__module__", "") or ""
        if where == modname or (is_package and where.startswith("distributed")):
            out.append(name)
    skip = INTERNAL.get(modname, set())
    return sorted(n for n in out if n not in skip)


def _params(obj: Any) -> list[str] | None:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind not in kinds and p.name != "self"]


def _takes_var_kw(obj: Any) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return False


def walk() -> dict[str, Any]:
    sys.modules.pop("shoal.compat.mode", None)
    report: dict[str, Any] = {"modules": {}, "totals": {}}
    totals = {"names": 0, "present": 0, "missing": 0, "stub": 0, "param_gaps": 0, "modules_missing": 0}
    for modname in MODULES:
        try:
            names = public_names(modname)
        except ImportError as e:  # an optional part of distributed not installed here
            report["modules"][modname] = {"skipped": str(e)}
            continue
        dmod = importlib.import_module(modname)
        smodname = "shoal" + modname[len("distributed"):]
        try:
            smod = importlib.import_module(smodname)
        except ImportError:
            smod = None
            totals["modules_missing"] += 1
        entry: dict[str, Any] = {"shoal_module": smodname, "module_missing": smod is None, "missing": [], "stub": [],
                                 "params": {}, "names": len(names)}  # fmt: skip
        for name in names:
            totals["names"] += 1
            sobj = getattr(smod, name, None) if smod is not None else None
            if sobj is None and not (smod is not None and hasattr(smod, name)):
                entry["missing"].append(name)
                totals["missing"] += 1
                continue
            if getattr(sobj, "__shoal_unsupported__", None):
                entry["stub"].append(name)
                totals["stub"] += 1
                continue
            totals["present"] += 1
            dobj = getattr(dmod, name, None)
            if callable(dobj) and callable(sobj) and not _takes_var_kw(sobj):
                dparams, sparams = _params(dobj), _params(sobj)
                if dparams is not None and sparams is not None:
                    lacking = [p for p in dparams if p not in sparams]
                    if lacking:
                        entry["params"][name] = lacking
                        totals["param_gaps"] += len(lacking)
        report["modules"][modname] = entry
    report["totals"] = totals
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for modname, entry in report["modules"].items():
        if "skipped" in entry:
            continue
        path = entry["shoal_module"]
        if entry["missing"]:
            lines.append(f"- `{path}`: no {', '.join(f'`{n}`' for n in entry['missing'])}")
        if entry["stub"]:
            lines.append(f"- `{path}`: {', '.join(f'`{n}`' for n in entry['stub'])} raise `NotImplementedError`")
        for name, params in entry["params"].items():
            lines.append(f"- `{path}.{name}`: no parameter {', '.join(f'`{p}`' for p in params)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    import distributed

    report = walk()
    report["distributed_version"] = distributed.__version__
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.markdown:
        print(markdown(report))
    else:
        t = report["totals"]
        print(f"distributed {distributed.__version__}: {t['names']} public names in {len(MODULES)} modules")
        print(f"  present in shoal: {t['present']}, NotImplementedError stubs: {t['stub']}, missing: {t['missing']}")
        print(f"  shoal modules missing: {t['modules_missing']}; parameters missing: {t['param_gaps']}")
        print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
