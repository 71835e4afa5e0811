"""shoal's configuration: defaults registered under the `shoal.` namespace of `dask.config`.

Key names follow `distributed.` where the concept is the same, so YAML files and
`DASK_SHOAL__...` environment variables work the way Dask users expect. Values are read
once where a server or client starts and passed down as plain values; the pure state
machines never read configuration themselves.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.config
from dask.utils import parse_bytes, parse_timedelta

#: shoal's own machinery: how a task is run on a worker and its error raised on the client
_SHOAL_FRAMES = [
    r"shoal[\\/](client|worker|graph|protocol|rpc|comm|sync)[\\/]",
    r"shoal[\\/](_loop|actor|worker_client)\.py",
    r"asyncio[\\/]",
]
#: dask's own list (`admin.traceback.shorten`: concurrent.futures, dask's schedulers, ...)
_DASK_FRAMES = [p for p in dask.config.get("admin.traceback.shorten", None) or [] if "distributed" not in p]

DEFAULTS: dict[str, Any] = {
    "shoal": {
        "comm": {
            # tcp: how long a TCP connection may go unanswered (unacknowledged data or
            # keepalive probes) before it counts as broken: a cut link with no reset
            # otherwise keeps a connection "open" for many minutes
            "timeouts": {"connect": "30s", "tcp": "30s"},
            # Largest packet a peer may announce; checked before anything is allocated.
            "max-packet-size": "8 GiB",
        },
        "client": {
            # Results at most this large travel inline with the completion message,
            # saving the client a round trip to the worker.
            "inline-result-size": "2 KiB",
            # huge graphs go to the scheduler in messages of at most this many tasks
            "graph-batch-size": 50_000,
        },
        "scheduler": {
            "allowed-failures": 3,
            # handler names every Scheduler refuses (as distributed.scheduler.blocked-handlers)
            "blocked-handlers": None,
            # Tasks kept queued on a worker per thread beyond the running ones, as a budget
            # of expected work: enough to hide a round trip, never more than the cap.
            "worker-queue-seconds": 0.01,
            "worker-queue-max-per-thread": 64,
            "unknown-task-duration": "500ms",
            # check every invariant after every stimulus: for tests, slow in production
            "validate": False,
            # events kept per topic (Client.log_event / get_events)
            "events-log-length": 100_000,
            # sample the scheduler's event-loop thread (Client.profile(scheduler=True))
            "profile": {"enabled": True, "interval": "10ms", "cycle": "1000ms", "history": 3600},
            # a worker not heard from (no message, no heartbeat) for this long is removed
            "worker-ttl": "5 minutes",
            # a scheduler with no work (nothing queued or processing) for this long closes
            "idle-timeout": None,
        },
        "worker": {
            # fractions of a worker's memory_limit (False turns one off; memory_limit 0
            # or None turns all off): managed data above `target` and process memory
            # above `spill` go to disk; above `pause` the worker takes no new work
            "memory": {
                "target": 0.60,
                "spill": 0.70,
                "pause": 0.80,
                # a nanny restarts its worker above this fraction of memory_limit (RSS)
                "terminate": 0.95,
                # how often a worker samples its memory (to spill and pause) and a nanny its
                # worker's RSS (and checks that it is alive)
                "monitor-interval": "100ms",
                # spilled values' large frames: "auto" = lz4 when installed, "lz4", or False
                "spill-compression": "auto",
            },
            # a fetch of data from one peer asks for at most this many bytes (one key at
            # least): bounds the memory a transfer takes on both sides
            "transfer": {"message-bytes-limit": "50MB"},
            "resources": {},
            "validate": False,
            # task-stream records each worker keeps (a ring buffer; 0 turns it off)
            "task-stream-length": 10_000,
            # the statistical profiler (Client.profile, performance_report): one thread per
            # worker samples the task threads every `interval` and closes a call tree every
            # `cycle`; `history` cycles are kept. `enabled: False` (or interval 0) turns it off.
            "profile": {"enabled": True, "interval": "10ms", "cycle": "1000ms", "history": 3600},
            # worker RSS samples for performance_report's memory chart (0 turns it off)
            "memory-history": {"interval": "200ms", "length": 10_000},
            # how often a worker tells the scheduler it is alive (see scheduler.worker-ttl)
            "heartbeat-interval": "1s",
            # a worker retires itself after `duration` (± a random `stagger`); with
            # `restart` its nanny starts a fresh one (Worker(lifetime=...))
            "lifetime": {"duration": None, "stagger": "0 seconds", "restart": False},
        },
        # the shuffle service (shoal/shuffle/): pieces a worker holds in memory, as a
        # fraction of its memory_limit (of the machine's memory without a limit), before
        # it spills them to disk and makes senders wait
        "shuffle": {"buffer": 0.15},
        "deploy": {"worker-start-timeout": "60s"},
        "dashboard": {
            # how often the live pages are updated (one update for all viewers)
            "interval": "500ms",
            # what `dashboard_link` shows; environment variables may be used, as in dask
            "link": "{scheme}://{host}:{port}/status",
            "prometheus": {"namespace": "dask"},
        },
        "security": {
            # the shared secret (hexadecimal) a client proves when it was given none and
            # finds no secret file for the address (see shoal.secret_files)
            "secret": None,
            # where schedulers keep their secret for their owner's clients, by address
            # (None: $XDG_RUNTIME_DIR/shoal or ~/.local/share/shoal/runtime)
            "runtime-dir": None,
            "secret-files": True,
        },
        "admin": {
            # recent log lines each process keeps in memory (get_scheduler_logs, get_worker_logs)
            "log-length": 10_000,
            # how shoal's lines look on the terminal (`logging.Formatter` syntax)
            "log-format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
            # a task's error message longer than this is cut (0: never)
            "max-error-length": 10_000,
            # frames of files matching these regular expressions are left out of the
            # tracebacks of tasks' exceptions (False or [] shows every frame)
            "traceback": {"shorten": [*_SHOAL_FRAMES, *_DASK_FRAMES]},
            # submit/map/compute of more pickled bytes than this warns (UserWarning)
            # that the data should be scattered or loaded by dask (0: never)
            "large-graph-warning-threshold": "10MB",
        },
        # logger name -> level ({"shoal.scheduler": "info"}), or a whole
        # logging.config.dictConfig mapping (with `version: 1`), as distributed.logging
        "logging": {},
        # defaults of `cluster.adapt()` / `shoal.deploy.Adaptive`
        "adaptive": {"interval": "1s", "minimum": 0, "maximum": float("inf"), "wait-count": 3, "target-duration": "5s"},
    }
}

dask.config.update_defaults(DEFAULTS)
# dask's `compute()` shortens tracebacks with its own list: let it leave out shoal's frames too
dask.config.update_defaults({"admin": {"traceback": {"shorten": [*_DASK_FRAMES, *_SHOAL_FRAMES]}}})


#: the environment variable that carries the user's configuration to worker processes
INHERIT_VAR = "SHOAL_INHERIT_CONFIG"


def _jsonable(value: Any) -> Any:
    """`value` with everything JSON cannot carry left out (a function set as dask's
    `scheduler`, ...); `_DROP` if nothing is left."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _jsonable(v)
            if isinstance(k, str) and v is not _DROP:
                out[k] = v
        return out
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return _DROP if any(v is _DROP for v in items) else items
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return _DROP


_DROP = object()


def inherited() -> str:
    """This process's dask configuration, serialized for `INHERIT_VAR`: what a user set
    with `dask.config.set` (or YAML, or variables) before starting workers reaches the
    worker processes (values JSON cannot carry stay behind)."""
    return dask.config.serialize(_jsonable(dask.config.config))


def apply_inherited(environ: dict) -> None:
    """In a worker process: take the configuration its parent passed (if any) over this
    process's own, as the parent saw it."""
    data = environ.pop(INHERIT_VAR, None)
    if data:
        dask.config.update(dask.config.config, dask.config.deserialize(data), priority="new")


_MISSING = object()


def _default_of(path: str) -> Any:
    """The registered default of a dotted key (`dask.config.defaults`, last one wins), or
    `_MISSING` when none is registered."""
    found: Any = _MISSING
    parts = path.split(".")
    for defaults in dask.config.defaults:
        node: Any = defaults
        for part in parts:
            if not isinstance(node, dict):
                node = _MISSING
                break
            node = node.get(part, node.get(part.replace("-", "_"), _MISSING))
            if node is _MISSING:
                break
        if node is not _MISSING:
            found = node
    return found


def _user_set(path: str, value: Any) -> bool:
    """Whether `path` holds something the user set (YAML, variables, `dask.config.set`)
    rather than a registered default (distributed's own, when it is imported)."""
    return value is not _MISSING and value != _default_of(path)


_twins_noted: set[str] = set()


def get(key: str, default: Any = None) -> Any:
    """Read `shoal.<key>` from dask's configuration. When the user set the
    `distributed.<key>` twin (a YAML file or `DASK_DISTRIBUTED__...` written for
    distributed) and left `shoal.<key>` at its default, the twin's value is used (logged
    once per key)."""
    value = dask.config.get(f"shoal.{key}", default=_MISSING)
    twin = dask.config.get(f"distributed.{key}", default=_MISSING)
    if _user_set(f"distributed.{key}", twin) and not _user_set(f"shoal.{key}", value):
        if key not in _twins_noted:
            _twins_noted.add(key)
            logging.getLogger("shoal.config").info("using distributed.%s = %r for shoal.%s", key, twin, key)
        return twin
    return default if value is _MISSING else value


def _leaves(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        out = []
        for k, v in node.items():
            out += _leaves(v, f"{prefix}.{k}")
        return out
    return [(prefix, node)]


_untwinned_warned: set[str] = set()


def warn_untwinned() -> list[str]:
    """Warn once about each `distributed.*` key the user set that has no `shoal.*` twin
    (so shoal does not read it); returns the keys warned about now."""
    settings = dask.config.config.get("distributed")
    if not isinstance(settings, dict):
        return []
    new = []
    for path, value in _leaves(settings, "distributed"):
        if path in _untwinned_warned or not _user_set(path, value):
            continue
        if _default_of("shoal" + path[len("distributed"):]) is not _MISSING:
            continue  # it has a twin: `get` reads it
        _untwinned_warned.add(path)
        new.append(path)
    if new:
        import warnings

        warnings.warn(
            f"shoal does not read these distributed settings (there is no shoal.* twin): {', '.join(new)}; "
            "see docs/configuration.md for shoal's keys",
            UserWarning,
            stacklevel=3,
        )
    return new


def get_timedelta(key: str) -> float:
    return float(parse_timedelta(get(key), default="s"))


def get_bytes(key: str) -> int:
    value = get(key)
    return int(parse_bytes(value) if isinstance(value, str) else value)
