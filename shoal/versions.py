"""Versions of the packages whose mismatch between processes breaks things; sent in every
handshake so peers can compare."""

from __future__ import annotations

import functools
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("shoal", "dask", "cloudpickle", "msgpack")


def get_versions(packages: Any = None) -> dict:
    """This process's python, platform and package versions (`PACKAGES`, and `packages`
    too when given, as distributed's `get_versions(packages=...)`); None: not installed.
    A new dict each call (the shared one is computed once)."""
    out = dict(_versions())
    for name in packages or ():
        out[name] = _installed(name)
    return out


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    out = {"python": ".".join(map(str, sys.version_info[:3])), "platform": platform.platform()}
    for name in PACKAGES:
        out[name] = _installed(name)
    return out


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------- Client.get_versions

#: packages whose versions must agree across the cluster (python: major.minor only)
KEY_PACKAGES = ("python", "shoal", "dask", "cloudpickle", "msgpack")

#: reported by `versions_report` besides the ones asked for (None when not installed)
REPORTED_PACKAGES = ("shoal", "dask", "msgpack", "cloudpickle", "toolz", "psutil", "numpy", "pandas", "lz4")


def _package_version(name: str) -> str | None:
    if name == "python":
        return ".".join(map(str, sys.version_info))
    try:
        return version(name)
    except PackageNotFoundError:
        module = sys.modules.get(name)
        v = getattr(module, "__version__", None)
        return str(v) if v is not None else None


def versions_report(packages: Any = None) -> dict:
    """This process's `{"host": {...}, "packages": {...}}`, in distributed's shape."""
    import locale
    import os
    import struct

    uname = platform.uname()
    host = {
        "python": ".".join(map(str, sys.version_info)),
        "python-bits": struct.calcsize("P") * 8,
        "OS": uname.system,
        "OS-release": uname.release,
        "machine": uname.machine,
        "processor": uname.processor,
        "byteorder": sys.byteorder,
        "LC_ALL": os.environ.get("LC_ALL", "None"),
        "LANG": os.environ.get("LANG", "None"),
        "locale": str(locale.getlocale()),
    }
    names = ["python", *REPORTED_PACKAGES, *(packages or ())]
    return {"host": host, "packages": {name: _package_version(name) for name in dict.fromkeys(names)}}


def _comparable(name: str, v: Any) -> Any:
    if name == "python" and isinstance(v, str):
        return ".".join(v.split(".")[:2])
    return v


def mismatches(client: dict, scheduler: dict, workers: dict[str, dict], packages: Any = ()) -> dict[str, dict]:
    """`{package: {"client": v, "scheduler": v, "workers": {v, ...}}}` for the key
    packages (and `packages`) whose versions differ. Each argument is a flat
    `{package: version}` map; a package a side does not report is not compared there."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys([*KEY_PACKAGES, *(packages or ())]):
        seen = {}
        if name in client:
            seen["client"] = _comparable(name, client[name])
        if name in scheduler:
            seen["scheduler"] = _comparable(name, scheduler[name])
        worker_versions = {_comparable(name, w[name]) for w in workers.values() if name in w}
        values = set(seen.values()) | worker_versions
        if len(values) > 1:
            out[name] = {**seen, "workers": worker_versions}
    return out


def format_mismatches(found: dict[str, dict]) -> str:
    """A readable table of `mismatches`."""
    rows = [("Package", "Client", "Scheduler", "Workers")]
    for name, sides in sorted(found.items()):
        workers = sides.get("workers") or set()
        rows.append(
            (
                name,
                str(sides.get("client", "-")),
                str(sides.get("scheduler", "-")),
                ", ".join(sorted(map(str, workers))) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    text = [line]
    for i, row in enumerate(rows):
        text.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            text.append(line)
    text.append(line)
    return "Mismatched versions found\n\n" + "\n".join(text)


def flat(report: dict) -> dict:
    """`versions_report` -> the flat `{package: version}` map `mismatches` compares."""
    return dict(report.get("packages", {}))


class VersionMismatchWarning(Warning):
    """The client, scheduler and workers run different versions of key packages."""


def get_system_info() -> list[tuple[str, Any]]:
    """Python, OS and machine facts, as distributed's `get_system_info`."""
    import locale
    import platform
    import struct
    import sys

    return [
        ("python", "%d.%d.%d.%s.%s" % sys.version_info),
        ("python-bits", struct.calcsize("P") * 8),
        ("OS", platform.system()),
        ("OS-release", platform.release()),
        ("machine", platform.machine()),
        ("processor", platform.processor()),
        ("byteorder", sys.byteorder),
        ("LC_ALL", locale.setlocale(locale.LC_ALL, None) if hasattr(locale, "LC_ALL") else None),
        ("LANG", __import__("os").environ.get("LANG")),
    ]


def get_package_info(pkgs: Any = ()) -> dict[str, str | None]:
    """`{package: version or None}` for `pkgs` (names, or `(name, module)` pairs)."""
    out: dict[str, str | None] = {}
    for item in pkgs:
        name = item[0] if isinstance(item, (tuple, list)) else item
        out[name] = _package_version(name)
    return out


from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {"error_message": "use shoal.versions.mismatches(...) and format_mismatches(...), which the client already warns with"},
)
