"""Compatibility mode: `import distributed` (and so `import dask.distributed`) gives shoal,
for code and libraries written for distributed that you do not want to change.

    python -m shoal.compat script.py [args]      # or: python -m shoal.compat -m module [args]
    import shoal.compat; shoal.compat.install()  # first thing in a program
    %load_ext shoal.compat                        # in IPython / Jupyter, first cell

How: `install()` puts a finder first on `sys.meta_path` that answers every
`distributed[.x.y]` import with a module standing for `shoal[.x.y]` (same objects:
`distributed.Client is shoal.Client`), and sets `SHOAL_COMPAT=1` in the environment, so
every worker process the cluster starts (nannies pass their environment on) installs the
mode before it unpickles a task. `distributed.__version__` is the version of distributed
whose API shoal implements (`DISTRIBUTED_VERSION`), for libraries that check it.

Caveats:
- It must run before anything imports `distributed` (or `dask.distributed`): `install()`
  raises `RuntimeError` when the real one is already imported (restart the kernel).
- Outside the mode a real `distributed` installed beside shoal stays untouched, and is
  what `import distributed` gives; `uninstall()` ends the mode in this process (modules
  already imported keep the shoal objects they got).
- `distributed`'s modules without a shoal counterpart (`distributed.utils_test`,
  `distributed.http`, ...) raise `ModuleNotFoundError` naming the mode; names shoal
  cannot honour raise `NotImplementedError` (see README).
- joblib's `"dask"` backend is shoal's own (`shoal.joblib_backend`): joblib's drives
  distributed's client through tornado's IOLoop API, which shoal does not have.
- Package metadata is not faked: `importlib.metadata.version("distributed")` reports the
  installed distributed, if any.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any

__all__ = ["DISTRIBUTED_VERSION", "ENV_VAR", "install", "installed", "load_ipython_extension", "uninstall"]

#: the distributed release whose public API shoal implements (what `distributed.__version__` says)
DISTRIBUTED_VERSION = "2026.8.0"
#: set in the environment while the mode is on, so worker processes turn it on too
ENV_VAR = "SHOAL_COMPAT"


def _shoal_name(name: str) -> str:
    return "shoal" + name[len("distributed") :]


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target_name = _shoal_name(spec.name)
        try:
            target = importlib.import_module(target_name)
        except ModuleNotFoundError as e:
            if e.name != target_name:
                raise
            raise ModuleNotFoundError(
                f"No module named {spec.name!r}: shoal's compatibility mode (shoal.compat) maps distributed "
                f"to shoal, and shoal has no {target_name!r}",
                name=spec.name,
            ) from None
        module = types.ModuleType(spec.name, target.__doc__)
        module.__dict__["__shoal_target__"] = target

        def __getattr__(attr: str) -> Any:
            return getattr(target, attr)

        def __dir__() -> list[str]:
            return dir(target)

        module.__dict__["__getattr__"] = __getattr__
        module.__dict__["__dir__"] = __dir__
        if hasattr(target, "__all__"):
            module.__dict__["__all__"] = list(target.__all__)
        if spec.name == "distributed":
            module.__dict__["__version__"] = DISTRIBUTED_VERSION
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__file__ = getattr(module.__shoal_target__, "__file__", None)


def _joblib_imported() -> None:
    backend = sys.modules.get("shoal.joblib_backend")
    if backend is not None and not hasattr(backend, "register_as_dask"):
        return  # shoal.joblib_backend is importing joblib: it registers itself once done
    from shoal.joblib_backend import register_as_dask

    register_as_dask()


class _AfterExec(importlib.abc.Loader):
    """Wraps a module's own loader; runs `then()` once the module has executed."""

    def __init__(self, loader: Any, then: Any):
        self.loader, self.then = loader, then

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        self.then()


class _DistributedFinder(importlib.abc.MetaPathFinder):
    """Answers `distributed` and `distributed.*` with aliases of shoal's modules (and
    notices when joblib is imported, to give it shoal's `"dask"` backend)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "joblib.parallel":
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _AfterExec(spec.loader, _joblib_imported)
            return spec
        if fullname != "distributed" and not fullname.startswith("distributed."):
            return None
        target_name = _shoal_name(fullname)
        try:
            target_spec = importlib.util.find_spec(target_name)
        except (ImportError, ValueError):
            target_spec = None
        is_package = target_spec is None or target_spec.submodule_search_locations is not None
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(), is_package=is_package)
        if is_package:
            spec.submodule_search_locations = []
        return spec


_finder = _DistributedFinder()


def installed() -> bool:
    return _finder in sys.meta_path


def _real_distributed_imported() -> list[str]:
    names = []
    for name in ("distributed", "dask.distributed"):
        module = sys.modules.get(name)
        if module is not None and "__shoal_target__" not in vars(module) and not _is_alias_user(module):
            names.append(name)
    return names


def _is_alias_user(module: types.ModuleType) -> bool:
    """dask.distributed imported under the mode (its names are shoal's)."""
    client = getattr(module, "Client", None)
    return getattr(client, "__module__", "").startswith("shoal")


def install() -> None:
    """Turn the mode on for this process and the worker processes it starts (idempotent)."""
    if installed():
        return
    already = _real_distributed_imported()
    if already:
        raise RuntimeError(
            f"shoal.compat.install() must run before distributed is imported, but {', '.join(already)} "
            "already is; call it first (or run `python -m shoal.compat script.py`), and in a notebook "
            "restart the kernel and `%load_ext shoal.compat` in the first cell"
        )
    sys.meta_path.insert(0, _finder)
    os.environ[ENV_VAR] = "1"
    import dask.base

    # dask looks `distributed` up once and caches what it found
    if getattr(dask.base, "_DISTRIBUTED_AVAILABLE", None) is False:
        dask.base._DISTRIBUTED_AVAILABLE = None
    if "joblib.parallel" in sys.modules:  # joblib's "dask" backend is shoal's (else once imported)
        _joblib_imported()


def uninstall() -> None:
    """Turn the mode off in this process (and for processes started from now on)."""
    while _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    os.environ.pop(ENV_VAR, None)
    for name in [n for n in sys.modules if n == "distributed" or n.startswith("distributed.")]:
        if "__shoal_target__" in vars(sys.modules[name]):
            del sys.modules[name]
    module = sys.modules.get("dask.distributed")
    if module is not None and _is_alias_user(module):
        del sys.modules["dask.distributed"]
    import dask.base

    dask.base._DISTRIBUTED_AVAILABLE = None


def install_from_environment(environ: Any = os.environ) -> None:
    """In a worker process: turn the mode on when the process that started it had it."""
    if environ.get(ENV_VAR) == "1":
        install()


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext shoal.compat`."""
    install()


def unload_ipython_extension(ipython: Any) -> None:
    uninstall()
