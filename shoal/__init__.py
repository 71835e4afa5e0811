"""shoal: Dask's distributed scheduler API, rebuilt to be fast, safe and resilient.

Switch by changing one import: ``from shoal import Client``.
"""

from __future__ import annotations

from shoal import config as _config  # noqa: F401  registers the shoal.* defaults
from shoal import log_terminal as _log_terminal

_log_terminal.initialize()  # warnings reach the user's terminal, unless they configured logging
from shoal.actor import Actor, ActorFuture, BaseActorFuture
from shoal.client.client import Client, default_client
from shoal.client.futures import Future
from shoal.client.helpers import as_completed, fire_and_forget, futures_of, wait
from shoal.deploy.adaptive import Adaptive
from shoal.deploy.local import LocalCluster
from shoal.diagnostics.builtin_plugins import CondaInstall, InstallPlugin, PipInstall, UploadDirectory
from shoal.diagnostics.plugin import Environ, NannyPlugin, SchedulerPlugin, UploadFile, WorkerPlugin
from shoal.diagnostics.performance_report import performance_report
from shoal.deploy.spec import SpecCluster
from shoal.deploy.ssh import SSHCluster
from shoal.deploy.subprocess import SubprocessCluster
from shoal.diagnostics.progressbar import progress
from shoal.diagnostics.remote_print import print, warn  # noqa: A004 - distributed's names
from shoal.diagnostics.task_metadata import get_task_metadata
from shoal.diagnostics.task_stream import get_task_stream
from shoal.exceptions import (
    CancelledError,
    ClosedClientError,
    FutureCancelledError,
    FuturesCancelledError,
    KilledWorker,
    Reschedule,
    TimeoutError,
    WorkerStartTimeoutError,
)
from shoal.scheduler.server import Scheduler
from shoal.security import Security
from shoal.status import Status
from shoal.sync import Event, Lock, MultiLock, Queue, Semaphore, Variable
from shoal.worker.nanny import Nanny
from shoal.worker.server import Worker, get_worker
from shoal.worker_client import get_client, local_client, rejoin, secede, worker_client

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorFuture",
    "Adaptive",
    "BaseActorFuture",
    "CancelledError",
    "Client",
    "CondaInstall",
    "ClosedClientError",
    "Environ",
    "Event",
    "Future",
    "FutureCancelledError",
    "FuturesCancelledError",
    "InstallPlugin",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MultiLock",
    "Nanny",
    "NannyPlugin",
    "PipInstall",
    "Queue",
    "Reschedule",
    "SSHCluster",
    "Scheduler",
    "SchedulerPlugin",
    "Security",
    "Semaphore",
    "Status",
    "SpecCluster",
    "SubprocessCluster",
    "TimeoutError",
    "UploadDirectory",
    "UploadFile",
    "Variable",
    "Worker",
    "WorkerPlugin",
    "WorkerStartTimeoutError",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_metadata",
    "get_task_stream",
    "get_worker",
    "local_client",
    "performance_report",
    "print",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "warn",
    "worker_client",
]


if "joblib" in __import__("sys").modules:  # joblib first: "shoal" is its backend at once
    from shoal import joblib_backend as _joblib_backend  # noqa: F401, E402

from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {"dask": "dask:"},
    {
        "CompatibleExecutor": "use Client.get_executor() (a concurrent.futures executor)",
        "connect": "distributed's comm layer; shoal's (shoal.comm.connect) speaks another protocol: use Client(address)",
        "span": "shoal has no spans yet; group work with annotations or get_task_stream()",
        "widgets": "shoal's notebook reprs are in shoal.diagnostics.reprs",
    },
)
