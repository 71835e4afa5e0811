"""distributed's ready-made plugins: installing packages on the workers (`PipInstall`,
`CondaInstall`, `InstallPlugin`), shipping a directory (`UploadDirectory`), and
forwarding what workers print or log (`ForwardOutput`, `ForwardLoggingPlugin`).

- `InstallPlugin(install_fn, restart_workers)` (and so `PipInstall`, `CondaInstall`) and
  `UploadDirectory` are `PluginRecipe`s, scheduler plugins in distributed; the client
  registers in its place a worker plugin that installs in every current and future
  worker (`restart_workers=False`) or a nanny plugin that installs in every nanny and
  restarts its worker so the new packages are imported fresh (`restart_workers=True`; new
  nannies install before their first worker starts, so none restarts twice). Installs
  on one machine take turns (a file lock per Python environment), and a failed install
  fails `register_plugin` with the installer's output.
- `UploadDirectory(path)` zips a directory (without `.git`, tests, caches, ...) and each
  worker unpacks it into its local directory (with `restart_workers=True` each nanny does,
  then restarts its worker); `update_path=True` puts it on the workers' `sys.path`
  (through `PYTHONPATH` for a nanny's worker processes). `mode="scheduler"` unpacks it on
  the scheduler instead (a scheduler plugin), `mode="all"` on both: there the scheduler
  plugin registers the workers' part itself, as distributed's does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

from shoal.diagnostics.plugin import NannyPlugin, SchedulerPlugin, WorkerPlugin

__all__ = [
    "CondaInstall",
    "ForwardLoggingPlugin",
    "ForwardOutput",
    "InstallPlugin",
    "PipInstall",
    "UploadDirectory",
    "forward_stream",
]

logger = logging.getLogger("shoal.plugins")


# ---------------------------------------------------------------------- installing packages


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One install at a time per Python environment on this machine."""
    import fcntl

    tag = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"shoal-install-{tag}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Installer:
    """Runs one package manager command; raises with its output when it fails."""

    kind = "install"

    def __init__(self, packages: Sequence[str], options: Sequence[str] | None):
        if isinstance(packages, str):
            raise TypeError(f"packages must be a list of package names, not the string {packages!r}")
        self.packages = [str(p) for p in packages]
        self.options = [str(o) for o in (options or [])]

    def command(self) -> list[str]:
        raise NotImplementedError

    def __call__(self) -> None:
        cmd = self.command()
        logger.info("installing %s: %s", self.packages, " ".join(cmd))
        with _install_lock():
            done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            raise RuntimeError(f"{self.kind} install of {self.packages} failed (exit {done.returncode}): {output}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(packages={self.packages!r}, options={self.options!r})"


class PipInstaller(_Installer):
    kind = "pip"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *self.options, *self.packages]


class CondaInstaller(_Installer):
    kind = "conda"

    def command(self) -> list[str]:
        conda = os.environ.get("CONDA_EXE") or "conda"
        return [conda, "install", "--yes", "--prefix", sys.prefix, *self.options, *self.packages]


class _InstallWorkerPlugin(WorkerPlugin):
    idempotent = True

    def __init__(self, install_fn: Any, name: str):
        self.install_fn = install_fn
        self.name = name

    def setup(self, worker: Any) -> None:
        self.install_fn()


class _InstallNannyPlugin(NannyPlugin):
    idempotent = True
    restart = True

    def __init__(self, install_fn: Any, name: str):
        self.install_fn = install_fn
        self.name = name

    def setup(self, nanny: Any) -> None:
        self.install_fn()


class PluginRecipe(SchedulerPlugin):
    """A plugin distributed runs from the scheduler; the client registers in its place
    the worker or nanny plugin `as_plugin()` returns."""

    def as_plugin(self) -> WorkerPlugin | NannyPlugin | SchedulerPlugin:
        raise NotImplementedError


class InstallPlugin(PluginRecipe):
    """Install packages on every current and future worker by calling `install_fn()` there
    (raising fails the registration); `restart_workers=True` installs in the nannies and
    restarts their workers. Register with `client.register_plugin(...)`."""

    idempotent = True

    def __init__(self, install_fn: Any, restart_workers: bool = False):
        self.install_fn = install_fn
        self.restart_workers = bool(restart_workers)
        token = hashlib.sha256(repr(install_fn).encode()).hexdigest()[:12]
        self.name = f"{getattr(install_fn, 'kind', 'install')}-install-{token}"

    def as_plugin(self) -> WorkerPlugin | NannyPlugin:
        cls = _InstallNannyPlugin if self.restart_workers else _InstallWorkerPlugin
        return cls(self.install_fn, self.name)


class PipInstall(InstallPlugin):
    """`pip install <pip_options> <packages>` in every worker's environment, e.g.
    `client.register_plugin(PipInstall(["scikit-learn==1.9.1"], restart_workers=True))`."""

    def __init__(
        self, packages: Sequence[str], pip_options: Sequence[str] | None = None, restart_workers: bool = False
    ):
        super().__init__(PipInstaller(packages, pip_options), restart_workers)
        self.packages = list(self.install_fn.packages)
        self.pip_options = list(self.install_fn.options)


class CondaInstall(InstallPlugin):
    """`conda install --yes <conda_options> <packages>` into every worker's environment."""

    def __init__(
        self, packages: Sequence[str], conda_options: Sequence[str] | None = None, restart_workers: bool = False
    ):
        super().__init__(CondaInstaller(packages, conda_options), restart_workers)
        self.packages = list(self.install_fn.packages)
        self.conda_options = list(self.install_fn.options)


# ---------------------------------------------------------------------- UploadDirectory

_SKIP_WORDS = (".git", ".github", ".pytest_cache", "tests", "docs")


def _unpack(data: bytes, base: str) -> None:
    os.makedirs(base, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for member in z.namelist():  # never outside `base` (no absolute paths, no "..")
            target = os.path.realpath(os.path.join(base, member))
            if not target.startswith(os.path.realpath(base) + os.sep):
                raise ValueError(f"UploadDirectory: refusing to unpack {member!r} outside {base}")
        z.extractall(base)


def _on_path(base: str, dirname: str) -> list[str]:
    """The entries `update_path` puts on `sys.path`: the uploaded directory itself (its
    modules import by their own names, as in distributed) and the directory it was
    unpacked into (`import <dirname>` works too)."""
    return [os.path.join(base, dirname), base]


class _UnpackInWorker(WorkerPlugin):
    idempotent = True

    def __init__(self, data: bytes, name: str, update_path: bool, dirname: str = ""):
        self.data, self.name, self.update_path, self.dirname = data, name, update_path, dirname

    def setup(self, worker: Any) -> None:
        base = str(worker.local_directory)
        _unpack(self.data, base)
        if self.update_path:
            for entry in reversed(_on_path(base, self.dirname)):
                if entry not in sys.path:
                    sys.path.insert(0, entry)


class _UnpackInNanny(NannyPlugin):
    idempotent = True
    restart = True

    def __init__(self, data: bytes, name: str, update_path: bool, dirname: str = ""):
        self.data, self.name, self.update_path, self.dirname = data, name, update_path, dirname

    def setup(self, nanny: Any) -> None:
        base = nanny.local_directory or os.path.join(tempfile.gettempdir(), f"shoal-uploads-{os.getpid()}")
        _unpack(self.data, base)
        if self.update_path:  # the worker processes' sys.path
            current = nanny.env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
            parts = [p for p in current.split(os.pathsep) if p]
            added = [entry for entry in _on_path(base, self.dirname) if entry not in parts]
            if added:
                nanny.env["PYTHONPATH"] = os.pathsep.join([*added, *parts])


def _raise_first_error(replies: dict) -> None:
    """Raise the first failure among broadcast replies `{address: (ok, value)}`."""
    from shoal.protocol.serialize import Pickled, loads

    for ok, value in replies.values():
        if not ok:
            exc = loads(value) if isinstance(value, Pickled) else value
            raise exc if isinstance(exc, BaseException) else RuntimeError(str(exc))


class _UnpackInScheduler(SchedulerPlugin):
    """The scheduler's side of `UploadDirectory(mode="scheduler" | "all")`: the directory
    unpacked into a directory of the scheduler's own (removed when the plugin closes or
    the scheduler does), on the scheduler's `sys.path` with `update_path`, so functions
    sent with `run_on_scheduler` and scheduler plugins can import it. With `workers` (a
    worker or nanny plugin, `mode="all"`) the scheduler then registers that plugin for
    every current and future worker (or nanny) itself, as distributed's does; a failure
    on a current one fails the registration."""

    idempotent = True

    def __init__(self, data: bytes, name: str, dirname: str, update_path: bool, workers: Any = None):
        self.data, self.name, self.dirname, self.update_path = data, name, dirname, update_path
        self.workers = workers
        self.directory: str | None = None
        self._added: list[str] = []

    async def start(self, scheduler: Any) -> None:  # type: ignore[override]
        self.directory = tempfile.mkdtemp(prefix="shoal-scheduler-upload-")
        try:
            _unpack(self.data, self.directory)
            if self.update_path:
                for entry in reversed(_on_path(self.directory, self.dirname)):
                    if entry not in sys.path:
                        sys.path.insert(0, entry)
                        self._added.append(entry)
            if self.workers is not None:
                await self._register_for_workers(scheduler)
        except BaseException:
            self.close()  # not registered: nothing else would clean up
            raise

    async def _register_for_workers(self, scheduler: Any) -> None:
        from shoal.diagnostics.plugin import add_worker_plugin
        from shoal.protocol.serialize import dumps

        plugin = self.workers
        if isinstance(plugin, NannyPlugin):
            replies = await scheduler.plugin_host.register_nanny_plugin(None, dumps(plugin), plugin.name)
        else:
            replies = await scheduler.admin.add_worker_setup(
                None, plugin.name, dumps(add_worker_plugin), dumps(((plugin, plugin.name), {}))
            )
        _raise_first_error(replies)

    def close(self) -> None:  # type: ignore[override]
        for entry in self._added:
            if entry in sys.path:
                sys.path.remove(entry)
        self._added = []
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


#: where `UploadDirectory(mode=...)` unpacks (distributed's `UPLOAD_DIRECTORY_MODES`)
UPLOAD_DIRECTORY_MODES = ["all", "scheduler", "workers"]


class UploadDirectory(PluginRecipe):
    """Ship the directory `path` to the cluster, unpacked as `<local directory>/<basename(path)>`.

    `mode="workers"` (the default): every current and future worker; `"scheduler"`: the
    scheduler only (a directory of its own, removed when the plugin is unregistered or
    the scheduler closes); `"all"`: both. Files whose path has a part in `skip_words`,
    or for which a function in `skip` returns true, stay behind. `update_path=True` puts
    the uploaded directory (its modules import by their names) and the directory it was
    unpacked into (`import <basename>` works) on `sys.path` of the workers (and the
    scheduler); `restart_workers=True` unpacks in the nannies and restarts their workers
    (code imported before is imported afresh). `restart=` is distributed's deprecated
    spelling of `restart_workers=` (a `FutureWarning`)."""

    idempotent = True

    def __init__(
        self,
        path: str,
        restart_workers: bool = False,
        update_path: bool = False,
        skip_words: Sequence[str] = _SKIP_WORDS,
        skip: Sequence[Any] = (lambda fn: os.path.splitext(fn)[1] == ".pyc",),
        mode: str = "workers",
        *,
        restart: bool | None = None,
    ):
        if restart is not None:
            import warnings

            if restart_workers:
                raise TypeError("UploadDirectory: give restart_workers= only (restart= is its deprecated name)")
            warnings.warn("the 'restart' keyword is deprecated, use 'restart_workers' instead", FutureWarning,
                          stacklevel=2)  # fmt: skip
            restart_workers = restart
        if mode not in UPLOAD_DIRECTORY_MODES:
            raise ValueError(f"mode={mode!r} not supported, expected one of {UPLOAD_DIRECTORY_MODES}")
        self.mode = mode
        path = os.path.expanduser(path)
        if not os.path.isdir(path):
            raise ValueError(f"UploadDirectory: {path!r} is not a directory")
        self.dirname = os.path.basename(os.path.normpath(path))
        self.path = self.dirname
        self.name = f"upload-directory-{self.dirname}"
        self.restart_workers = bool(restart_workers)
        self.update_path = bool(update_path)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d not in skip_words]
                for fn in files:
                    full = os.path.join(root, fn)
                    rel = os.path.relpath(full, path)
                    if any(word in rel.split(os.sep) for word in skip_words) or any(f(full) for f in skip):
                        continue
                    z.write(full, os.path.join(self.dirname, rel))
        self.data = buffer.getvalue()

    def _for_workers(self) -> WorkerPlugin | NannyPlugin:
        cls = _UnpackInNanny if self.restart_workers else _UnpackInWorker
        return cls(self.data, self.name, self.update_path, self.dirname)

    def as_plugin(self) -> WorkerPlugin | NannyPlugin | SchedulerPlugin:
        if self.mode == "workers":
            return self._for_workers()
        workers = self._for_workers() if self.mode == "all" else None
        return _UnpackInScheduler(self.data, self.name, self.dirname, self.update_path, workers)


# ---------------------------------------------------------------------- forwarding output and logs


class _Forward(io.TextIOBase):
    def __init__(self, stream: Any, worker: Any, file: int):
        self.stream = stream
        self.worker = worker
        self.file = file

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        if text:
            try:
                self.worker.log_event("print", {"args": (text,), "sep": "", "end": "", "file": self.file})
            except Exception:  # noqa: BLE001 - printing must never fail because forwarding did
                pass
        return n if n is not None else len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


@contextlib.contextmanager
def forward_stream(stream: str, worker: Any = None) -> Iterator[None]:
    """Inside the block, what is written to `sys.<stream>` ("stdout" or "stderr") on this
    worker is also printed by every client."""
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
    if worker is None:
        from shoal.worker.server import get_worker

        worker = get_worker()
    original = getattr(sys, stream)
    setattr(sys, stream, _Forward(original, worker, 1 if stream == "stdout" else 2))
    try:
        yield
    finally:
        setattr(sys, stream, original)


class ForwardOutput(WorkerPlugin):
    """Everything workers write to stdout and stderr is also printed by every client."""

    name = "forward-output"
    idempotent = True

    def setup(self, worker: Any) -> None:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(forward_stream("stdout", worker))
        self._stack.enter_context(forward_stream("stderr", worker))

    def teardown(self, worker: Any) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()


class _TopicHandler(logging.Handler):
    def __init__(self, worker: Any, topic: str, level: int):
        super().__init__(level)
        self.worker = worker
        self.topic = topic

    def emit(self, record: logging.LogRecord) -> None:
        from shoal.forward_logging import record_to_dict

        if getattr(_emitting, "on", False):
            return  # a record logged while forwarding one
        _emitting.on = True
        try:
            self.worker.log_event(self.topic, record_to_dict(record))
        except Exception:  # noqa: BLE001
            self.handleError(record)
        finally:
            _emitting.on = False


_emitting = threading.local()


class ForwardLoggingPlugin(WorkerPlugin):
    """Send the records of `logger_name` at `level` or above emitted on every worker as
    events on `topic` (read them with `client.subscribe_topic(topic, handler)` or
    `client.get_events(topic)`). `Client.forward_logging` is the ready-made way."""

    idempotent = True

    def __init__(self, logger_name: str | None, level: int, topic: str):
        self.logger_name = logger_name
        self.level = level
        self.topic = topic
        self.name = f"forward-logging-plugin-{logger_name or ''}-{topic}"

    def setup(self, worker: Any) -> None:
        self._handler = _TopicHandler(worker, self.topic, self.level)
        logging.getLogger(self.logger_name).addHandler(self._handler)

    def teardown(self, worker: Any) -> None:
        handler = getattr(self, "_handler", None)
        if handler is not None:
            logging.getLogger(self.logger_name).removeHandler(handler)
