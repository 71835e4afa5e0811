"""Scheduler files: how a scheduler tells workers and clients where it is (and its secret).

`shoal scheduler --scheduler-file PATH` writes a JSON object with the keys `distributed`
writes (`type`, `id`, `address`, `services`, `started`, `workers`) plus, when the
scheduler has a shared secret, `"shoal-secret"` (hex). Because the file may hold the
secret it is created with mode 0600 (owner only), written to a temporary file in the same
directory and renamed into place, so readers never see half a file. Workers
(`shoal worker --scheduler-file`) and `Client(scheduler_file=...)` wait for it to appear.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

SECRET_KEY = "shoal-secret"


def write_scheduler_file(path: str, info: dict[str, Any], secret: bytes | None = None) -> None:
    """Write `info` (and `secret`, hex) to `path` atomically, readable by its owner only."""
    data = dict(info)
    if secret:
        data[SECRET_KEY] = secret.hex()
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shoal-scheduler-", suffix=".json", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_scheduler_file(path: str, timeout: float | None = 30.0) -> dict[str, Any]:
    """The JSON object in `path`, waiting up to `timeout` seconds (None: forever) for the
    file to appear. `TimeoutError` if it does not."""
    path = os.path.expanduser(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"scheduler file {path} did not appear within {timeout} s") from None
        except json.JSONDecodeError as e:  # written by something else than a scheduler
            raise ValueError(f"scheduler file {path} is not valid JSON: {e}") from None
        time.sleep(0.05)  # polling the filesystem: there is no portable event to wait on


def secret_from(info: dict[str, Any]) -> bytes | None:
    """The shared secret stored in a scheduler file's contents, if any."""
    value = info.get(SECRET_KEY)
    return bytes.fromhex(value) if value else None


def remove_scheduler_file(path: str, scheduler_id: str) -> None:
    """Delete `path` if it still describes the scheduler `scheduler_id` (not a newer one)."""
    try:
        with open(path) as f:
            if json.load(f).get("id") != scheduler_id:
                return
        os.unlink(path)
    except (OSError, ValueError):
        pass
