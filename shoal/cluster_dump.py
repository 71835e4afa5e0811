"""Cluster state dumps: `Client.dump_cluster_state` writes one, `load_cluster_dump` reads it.

A dump is one mapping ``{"scheduler": {...}, "workers": {address: {...}}, "versions":
{"scheduler": ..., "workers": {...}}}`` of plain data (str map keys, lists, numbers,
strings; anything else as its `repr`), written as gzipped msgpack (``<name>.msgpack.gz``)
or YAML (``<name>.yaml``, needs PyYAML). A name containing ``://`` is a URL opened with
fsspec (needs fsspec). Task keys that are not strings (tuples) appear as their `str`.

The records are built by `shoal.scheduler.dump.scheduler_state` and
`shoal.worker.dump.worker_state` from the live objects (for debugging: they read the
records, never change them); this module owns the format: `plain`, `write_state`,
`load_cluster_dump`.

    >>> state = load_cluster_dump("dask-cluster-dump.msgpack.gz")
    >>> state["scheduler"]["tasks"]["inc-abc"]["state"]
    'memory'
"""

from __future__ import annotations

import gzip
from typing import Any

import msgpack


FORMATS = ("msgpack", "yaml")


def plain(obj: Any) -> Any:
    """`obj` as data msgpack and YAML both store: dicts with str keys, lists, scalars."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, str):  # a str subclass (a `Status`): YAML stores plain str only
        return str.__str__(obj)
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, (int, float)):  # an IntEnum, numpy scalars registered as numbers
        return int(obj) if isinstance(obj, int) else float(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(x) for x in obj]
    return repr(obj)


def drop_fields(record: dict, exclude: Any) -> dict:
    for name in exclude:
        record.pop(name, None)
    return record


def _path(filename: str, format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"Unsupported format {format!r}; expected one of {list(FORMATS)}")
    suffix = ".msgpack.gz" if format == "msgpack" else ".yaml"
    return filename if filename.endswith(suffix) else filename + suffix


def require_yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError(
            "dumping or loading the cluster state as YAML needs PyYAML (pip install pyyaml); "
            "or use format='msgpack'"
        ) from None
    return yaml


def _open(url: str, mode: str, storage_options: dict) -> Any:
    if "://" in url:
        try:
            import fsspec
        except ImportError:
            raise ImportError(f"writing or reading {url!r} needs fsspec (pip install fsspec)") from None
        return fsspec.open(url, mode, **storage_options)
    return open(url, mode)


def write_state(state: dict, filename: str, format: str = "msgpack", **storage_options: Any) -> str:
    """Write `state` (plain data) to `filename` + the format's suffix; returns the path."""
    path = _path(filename, format)
    if format == "msgpack":
        data = gzip.compress(msgpack.packb(state, use_bin_type=True))
        with _open(path, "wb", storage_options) as f:
            f.write(data)
    else:
        yaml = require_yaml()
        with _open(path, "w", storage_options) as f:
            yaml.safe_dump(state, f)
    return path


def load_cluster_dump(url: str, format: str | None = None, **storage_options: Any) -> dict:
    """Read a dump written by `Client.dump_cluster_state` (format from the suffix
    ``.msgpack.gz`` / ``.yaml`` unless given)."""
    if format is None:
        if url.endswith(".msgpack.gz"):
            format = "msgpack"
        elif url.endswith((".yaml", ".yml")):
            format = "yaml"
        else:
            raise ValueError(f"cannot tell the format of {url!r}: expected a .msgpack.gz or .yaml file")
    if format == "msgpack":
        with _open(url, "rb", storage_options) as f:
            return msgpack.unpackb(gzip.decompress(f.read()), raw=False, strict_map_key=False)
    if format == "yaml":
        yaml = require_yaml()
        with _open(url, "r", storage_options) as f:
            return yaml.safe_load(f)
    raise ValueError(f"Unsupported format {format!r}; expected one of {list(FORMATS)}")


__all__ = ["load_cluster_dump", "write_state"]


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'DumpArtefact': 'use shoal.cluster_dump.load_cluster_dump(path), which returns the dump as plain data',
    },
)
