"""Versions of the packages whose mismatch between processes breaks things; sent in every
handshake so peers can compare."""

from __future__ import annotations

import functools
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("shoal", "dask", "cloudpickle", "msgpack")


@functools.lru_cache(maxsize=1)
def get_versions() -> dict:
    out = {"python": ".".join(map(str, sys.version_info[:3])), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
