"""distributed's ready-made plugins: installing packages on the workers (`PipInstall`,
`CondaInstall`, `InstallPlugin`), shipping a directory (`UploadDirectory`), and
forwarding what workers print or log (`ForwardOutput`, `ForwardLoggingPlugin`).

- `InstallPlugin(installer, restart_workers)` is what users register; the client
  registers in its place a worker plugin that installs in every current and future
  worker (`restart_workers=False`) or a nanny plugin that installs in every nanny and
  restarts its worker so the new packages are imported fresh (`restart_workers=True`; new
  nannies install before their first worker starts, so none restarts twice). Installs
  on one machine take turns (a file lock per Python environment), and a failed install
  fails `register_plugin` with the installer's output.
- `UploadDirectory(path)` zips a directory (without `.git`, tests, caches, ...) and each
  nanny unpacks it into its local directory; `update_path=True` puts it on the worker
  processes' `sys.path` (`PYTHONPATH`), `restart=True` restarts the workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
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

    def install(self) -> None:
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

    def __init__(self, installer: Any, name: str):
        self.installer = installer
        self.name = name

    def setup(self, worker: Any) -> None:
        self.installer.install()


class _InstallNannyPlugin(NannyPlugin):
    idempotent = True
    restart = True

    def __init__(self, installer: Any, name: str):
        self.installer = installer
        self.name = name

    def setup(self, nanny: Any) -> None:
        self.installer.install()


class InstallPlugin(SchedulerPlugin):
    """Install packages on every current and future worker with `installer` (an object
    with `install()`); `restart_workers=True` installs in the nannies and restarts their
    workers. Register with `client.register_plugin(...)`."""

    idempotent = True

    def __init__(self, installer: Any, restart_workers: bool = False):
        self.installer = installer
        self.restart_workers = bool(restart_workers)
        token = hashlib.sha256(repr(installer).encode()).hexdigest()[:12]
        self.name = f"{getattr(installer, 'kind', 'install')}-install-{token}"

    def as_plugin(self) -> WorkerPlugin | NannyPlugin:
        """What the client registers in place of this plugin."""
        cls = _InstallNannyPlugin if self.restart_workers else _InstallWorkerPlugin
        return cls(self.installer, self.name)


class PipInstall(InstallPlugin):
    """`pip install <pip_options> <packages>` in every worker's environment, e.g.
    `client.register_plugin(PipInstall(["scikit-learn==1.9.1"], restart_workers=True))`."""

    def __init__(self, packages: Sequence[str], pip_options: Sequence[str] | None = None, restart_workers: bool = False):
        super().__init__(PipInstaller(packages, pip_options), restart_workers)
        self.packages = list(self.installer.packages)
        self.pip_options = list(self.installer.options)


class CondaInstall(InstallPlugin):
    """`conda install --yes <conda_options> <packages>` into every worker's environment."""

    def __init__(
        self, packages: Sequence[str], conda_options: Sequence[str] | None = None, restart_workers: bool = False
    ):
        super().__init__(CondaInstaller(packages, conda_options), restart_workers)
        self.packages = list(self.installer.packages)
        self.conda_options = list(self.installer.options)


# ---------------------------------------------------------------------- UploadDirectory

_SKIP_WORDS = (".git", ".github", ".pytest_cache", "tests", "docs")


class UploadDirectory(NannyPlugin):
    """Ship the directory `path` to every current and future nanny, unpacked as
    `<local directory>/<basename(path)>`. Files whose path has a part in `skip_words`,
    or for which a function in `skip` returns true, stay behind. `update_path=True` adds
    the directory to the worker processes' `sys.path`; `restart=True` restarts them."""

    def __init__(
        self,
        path: str,
        restart: bool = False,
        update_path: bool = False,
        skip_words: Sequence[str] = _SKIP_WORDS,
        skip: Sequence[Any] = (lambda fn: os.path.splitext(fn)[1] == ".pyc",),
        mode: str = "",
    ):
        path = os.path.expanduser(path)
        if not os.path.isdir(path):
            raise ValueError(f"UploadDirectory: {path!r} is not a directory")
        self.dirname = os.path.basename(os.path.normpath(path))
        self.name = f"upload-directory-{self.dirname}"
        self.restart = bool(restart)
        self.update_path = bool(update_path)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d not in skip_words]
                for fn in files:
                    full = os.path.join(root, fn)
                    rel = os.path.relpath(full, path)
                    parts = rel.split(os.sep)
                    if any(word in parts for word in skip_words) or any(f(full) for f in skip):
                        continue
                    z.write(full, os.path.join(self.dirname, rel))
        self.data = buffer.getvalue()

    def setup(self, nanny: Any) -> None:
        base = nanny.local_directory or os.path.join(tempfile.gettempdir(), f"shoal-uploads-{os.getpid()}")
        os.makedirs(base, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(self.data)) as z:
            for member in z.namelist():  # never outside `base` (no absolute paths, no "..")
                target = os.path.realpath(os.path.join(base, member))
                if not target.startswith(os.path.realpath(base) + os.sep):
                    raise ValueError(f"UploadDirectory: refusing to unpack {member!r} outside {base}")
            z.extractall(base)
        self.path = os.path.join(base, self.dirname)
        if self.update_path:
            current = nanny.env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
            parts = [p for p in current.split(os.pathsep) if p]
            if base not in parts:
                nanny.env["PYTHONPATH"] = os.pathsep.join([base, *parts])
            if base not in sys.path:
                sys.path.insert(0, base)


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
