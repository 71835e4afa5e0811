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
from shoal.diagnostics.plugin import Environ, NannyPlugin, SchedulerPlugin, UploadFile, WorkerPlugin
from shoal.diagnostics.performance_report import performance_report
from shoal.deploy.spec import SpecCluster
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
from shoal.sync import Event, Lock, MultiLock, Queue, Semaphore, Variable
from shoal.worker.nanny import Nanny
from shoal.worker.server import Worker, get_worker
from shoal.worker_client import get_client, rejoin, secede, worker_client

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorFuture",
    "Adaptive",
    "BaseActorFuture",
    "CancelledError",
    "Client",
    "ClosedClientError",
    "Environ",
    "Event",
    "Future",
    "FutureCancelledError",
    "FuturesCancelledError",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MultiLock",
    "Nanny",
    "NannyPlugin",
    "Queue",
    "Reschedule",
    "Scheduler",
    "SchedulerPlugin",
    "Security",
    "Semaphore",
    "SpecCluster",
    "TimeoutError",
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
    "performance_report",
    "print",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "warn",
    "worker_client",
]
