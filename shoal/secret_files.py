"""Where a cluster's shared secret is kept for its owner, and how a connector finds one.

A scheduler with a secret writes it to a *secret file* in the user's runtime directory,
keyed by the address it listens on (as Jupyter keeps its kernels' connection files), and
removes it when it closes. A `Client` (or a worker) given only an address looks for a
secret in this order:

1. what it was given (`security=`, a cluster object's `security`);
2. a scheduler in this process listening at that address;
3. the secret file for that address;
4. the `SHOAL_SECRET` environment variable;
5. the `shoal.security.secret` configuration value.

**One encoding everywhere**: a secret given as text is hexadecimal (what `SHOAL_SECRET`,
`--secret-file`, scheduler files, secret files and `DASK_SHOAL__SECURITY__SECRET` hold);
given as `bytes` it is the raw secret.

Only the owner can use a secret file: the directory is created mode 0700 and each file
0600, both owned by the user; a file or directory that another user owns or that others
may read is ignored (with a warning). The runtime directory is
`shoal.security.runtime-dir` when set, else `$XDG_RUNTIME_DIR/shoal`, else
`~/.local/share/shoal/runtime`; `shoal.security.secret-files: False` turns the files off.
A file whose scheduler process (on this host: a home directory may be shared) has died is
stale and is ignored and removed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from typing import Any

import psutil

from shoal import config
from shoal.security import normalize_secret

__all__ = [
    "parse_secret",
    "runtime_dir",
    "secret_file_path",
    "remember",
    "forget",
    "lookup",
    "resolve",
    "how_to_pass",
]

logger = logging.getLogger("shoal.security")

ENV_VAR = "SHOAL_SECRET"

#: secrets of schedulers running in this process, by normalized address
_in_process: dict[str, bytes] = {}
_lock = threading.Lock()


#: the one encoding (`shoal.security.normalize_secret`): bytes, or hexadecimal text
parse_secret = normalize_secret


def runtime_dir() -> str:
    """The directory holding this user's secret files (not created here)."""
    configured = config.get("security.runtime-dir", None)
    if configured:
        return os.path.expanduser(str(configured))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "shoal")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "shoal", "runtime")


def _enabled() -> bool:
    return bool(config.get("security.secret-files", True))


def _key(address: str) -> str | None:
    """`tcp://host:port` with `localhost` as 127.0.0.1, or None for addresses that are
    not reachable from another process (in-process ones)."""
    if not isinstance(address, str):
        return None
    scheme, sep, loc = address.partition("://")
    if not sep:
        scheme, loc = "tcp", address
    scheme = scheme.lower()
    if scheme != "tcp":
        return None
    host, _, port = loc.rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]").lower()
    if host in ("localhost", "", "0.0.0.0"):
        host = "127.0.0.1"
    return f"{scheme}://{host}:{int(port)}"


def secret_file_path(address: str) -> str | None:
    key = _key(address)
    if key is None:
        return None
    safe = key.replace("://", "-").replace(":", "-").replace("/", "-")
    return os.path.join(runtime_dir(), f"scheduler-{safe}.json")


def _private(st: os.stat_result, want_dir: bool) -> bool:
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    if want_dir != stat.S_ISDIR(st.st_mode):
        return False
    return st.st_mode & 0o077 == 0


def _ensure_dir(path: str) -> bool:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            logger.warning("not writing secret files to %s: another user owns it", path)
            return False
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
        return True
    except OSError as e:
        logger.warning("cannot use %s for secret files: %s", path, e)
        return False


def remember(address: str, secret: bytes | None) -> str | None:
    """Make `secret` findable by `address`: in this process, and (unless turned off) in a
    secret file only this user can read. Returns the file's path, if one was written."""
    key = _key(address)
    if key is None or not secret:
        return None
    with _lock:
        _in_process[key] = secret
    if not _enabled():
        return None
    path = secret_file_path(address)
    assert path is not None
    directory = os.path.dirname(path)
    if not _ensure_dir(directory):
        return None
    data = json.dumps({"address": key, "secret": secret.hex(), "pid": os.getpid(), "host": socket.gethostname()})
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        logger.warning("cannot write the secret file %s: %s", path, e)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    return path


def forget(address: str, secret: bytes | None) -> None:
    """Undo `remember` when the scheduler closes (leaving a newer scheduler's file alone)."""
    key = _key(address)
    if key is None or not secret:
        return
    with _lock:
        if _in_process.get(key) == secret:
            del _in_process[key]
    path = secret_file_path(address)
    if path is None:
        return
    info = _read(path)
    if info is not None and info.get("secret") == secret.hex() and info.get("pid") == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass


def _read(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        dst = None
        try:
            dst = os.stat(os.path.dirname(path))
        except OSError:
            pass
        if not _private(st, want_dir=False) or dst is None or not _private(dst, want_dir=True):
            logger.warning(
                "ignoring the secret file %s: it (or its directory) is not private to this user "
                "(it must be owned by uid %s, file mode 0600, directory 0700)",
                path,
                os.getuid() if hasattr(os, "getuid") else "?",
            )
            return None
        try:
            info = json.load(f)
        except ValueError:
            return None
    return info if isinstance(info, dict) else None


def lookup(address: str) -> bytes | None:
    """The secret of the scheduler at `address` started by this user on this machine (in
    this process or another), or None."""
    key = _key(address)
    if key is None:
        return None
    with _lock:
        secret = _in_process.get(key)
    if secret is not None:
        return secret
    if not _enabled():
        return None
    path = secret_file_path(address)
    assert path is not None
    info = _read(path)
    if info is None:
        return None
    pid = info.get("pid")
    here = info.get("host", socket.gethostname()) == socket.gethostname()  # (a home directory may be shared)
    if here and isinstance(pid, int) and not psutil.pid_exists(pid):
        try:
            os.unlink(path)  # its scheduler died without removing it
        except OSError:
            pass
        return None
    try:
        return parse_secret(info.get("secret"), f"secret file {path}")
    except (TypeError, ValueError):
        return None


def resolve(address: str | None, security: Any = None) -> tuple[bytes | None, str]:
    """The secret to prove when connecting to `address`, and where it came from (for
    error messages). `security`: a `Security`, bytes, hex text, None (look it up) or
    False (connect without a secret)."""
    if security is False:
        return None, "security=False"
    if isinstance(security, (bytes, bytearray, str)):
        return parse_secret(security, "security"), "the security= argument"
    secret = getattr(security, "secret", None) if security is not None else None
    if secret:
        return parse_secret(secret, "Security.secret"), "the security= argument"
    if address:
        secret = lookup(address)
        if secret is not None:
            path = secret_file_path(address)
            return secret, f"the secret file {path}" if path else "this process's scheduler"
    env = os.environ.get(ENV_VAR)
    if env:
        return parse_secret(env, ENV_VAR), ENV_VAR
    configured = config.get("security.secret", None)
    if configured:
        return parse_secret(configured, "configuration shoal.security.secret"), "configuration shoal.security.secret"
    return None, "nowhere"


def how_to_pass(address: str, source: str) -> str:
    """The second half of a refusal: where this side's secret came from, how to give one."""
    where = (
        f"This side found no secret for {address}"
        if source == "nowhere"
        else f"This side's secret came from {source}"
    )
    return (
        f"{where}. Pass the cluster's secret with Client({address!r}, security=Security('<hex>')) "
        f"or security=cluster.security, or set {ENV_VAR}=<hex> in the environment, or the dask "
        f"configuration shoal.security.secret (DASK_SHOAL__SECURITY__SECRET=<hex>); the hex text is what "
        f"`shoal scheduler` takes from SHOAL_SECRET/--secret-file or writes to its scheduler file. A "
        f"cluster this user started on this machine is found by address without any of these, through "
        f"its secret file in {runtime_dir()}."
    )
