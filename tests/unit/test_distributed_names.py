"""distributed's import paths and names exist under shoal with the same meaning; what
shoal cannot honour is a named NotImplementedError, not an AttributeError."""

from __future__ import annotations

import importlib

import pytest

# (shoal module, name, where shoal keeps it) — the paths users and libraries import from
PATHS = [
    ("shoal.worker", "get_worker", "shoal.worker.server"),
    ("shoal.worker", "Worker", "shoal.worker.server"),
    ("shoal.worker", "get_client", "shoal.worker_client"),
    ("shoal.worker", "secede", "shoal.worker_client"),
    ("shoal.worker_client", "local_client", "shoal.worker_client"),
    ("shoal.scheduler", "KilledWorker", "shoal.exceptions"),
    ("shoal.scheduler", "Scheduler", "shoal.scheduler.server"),
    ("shoal.client", "Future", "shoal.client.futures"),
    ("shoal.client", "Client", "shoal.client.client"),
    ("shoal.client", "default_client", "shoal.client.client"),
    ("shoal.client", "wait", "shoal.client.helpers"),
    ("shoal.client", "as_completed", "shoal.client.helpers"),
    ("shoal.client", "futures_of", "shoal.client.helpers"),
    ("shoal.client", "temp_default_client", "shoal.client.defaults"),
    ("shoal.nanny", "Nanny", "shoal.worker.nanny"),
    ("shoal.core", "Status", "shoal.status"),
    ("shoal.lock", "Lock", "shoal.sync"),
    ("shoal.queues", "Queue", "shoal.sync"),
    ("shoal.variable", "Variable", "shoal.sync"),
    ("shoal.event", "Event", "shoal.sync"),
    ("shoal.semaphore", "Semaphore", "shoal.sync"),
    ("shoal.multi_lock", "MultiLock", "shoal.sync"),
    ("shoal.security", "Security", "shoal.security"),
    ("shoal.utils", "sync", "shoal._loop"),
    ("shoal.utils", "NoOpAwaitable", "shoal.utils_compat"),
    ("shoal.sizeof", "safe_sizeof", "shoal.worker.sizeof"),
    ("shoal.cfexecutor", "ClientExecutor", "shoal.client.executor"),
    ("shoal.protocol", "dask_serialize", "shoal.protocol.registries"),
    ("shoal.protocol", "dask_deserialize", "shoal.protocol.registries"),
    ("shoal.protocol.serialize", "dask_serialize", "shoal.protocol.registries"),
    ("shoal.diagnostics", "MemorySampler", "shoal.diagnostics.memory_sampler"),
    ("shoal.diagnostics", "SchedulerPlugin", "shoal.diagnostics.plugin"),
    ("shoal.diagnostics.plugin", "PipInstall", "shoal.diagnostics.builtin_plugins"),
    ("shoal.diagnostics.plugin", "UploadDirectory", "shoal.diagnostics.builtin_plugins"),
    ("shoal.diagnostics.plugin", "ForwardOutput", "shoal.diagnostics.builtin_plugins"),
    ("shoal.diagnostics.plugin", "ForwardLoggingPlugin", "shoal.diagnostics.builtin_plugins"),
    ("shoal.diagnostics.plugin", "WorkerPlugin", "shoal.diagnostics.plugin"),
    ("shoal.diagnostics.progressbar", "TextProgressBar", "shoal.diagnostics.progressbar"),
    ("shoal.deploy", "Cluster", "shoal.deploy.cluster"),
    ("shoal.deploy.cluster", "Cluster", "shoal.deploy.cluster"),
    ("shoal.deploy", "SSHCluster", "shoal.deploy.ssh"),
    ("shoal.deploy", "SubprocessCluster", "shoal.deploy.subprocess"),
    ("shoal.deploy.spec", "ProcessInterface", "shoal.deploy.spec"),
    ("shoal.deploy.spec", "run_spec", "shoal.deploy.compat_helpers"),
    ("shoal.deploy.local", "LocalCluster", "shoal.deploy.local"),
    ("shoal.deploy.adaptive", "Adaptive", "shoal.deploy.adaptive"),
    ("shoal.versions", "get_versions", "shoal.versions"),
    ("shoal.versions", "VersionMismatchWarning", "shoal.versions"),
    ("shoal", "Status", "shoal.status"),
    ("shoal", "PipInstall", "shoal.diagnostics.builtin_plugins"),
    ("shoal", "UploadDirectory", "shoal.diagnostics.builtin_plugins"),
    ("shoal", "SSHCluster", "shoal.deploy.ssh"),
    ("shoal", "SubprocessCluster", "shoal.deploy.subprocess"),
    ("shoal", "local_client", "shoal.worker_client"),
]


@pytest.mark.parametrize("module, name, home", PATHS, ids=[f"{m}.{n}" for m, n, _ in PATHS])
def test_import_path(module, name, home):
    obj = getattr(importlib.import_module(module), name)
    assert not getattr(obj, "__shoal_unsupported__", None)
    assert getattr(importlib.import_module(home), name, None) is obj or obj.__module__ == home


@pytest.mark.parametrize(
    "module, name, hint",
    [
        ("shoal.scheduler", "TaskGroup", "SchedulerState"),
        ("shoal.core", "rpc", "shoal.rpc"),
        ("shoal.client", "CompatibleExecutor", "get_executor"),
        ("shoal.queues", "QueueExtension", "itself"),
        ("shoal.diagnostics.memory_sampler", "MemorySamplerExtension", "MemorySampler"),
        ("shoal", "span", "spans"),
    ],
)
def test_what_cannot_be_honoured_says_what_to_use(module, name, hint):
    stub = getattr(importlib.import_module(module), name)
    with pytest.raises(NotImplementedError, match=hint) as info:
        stub()
    assert f"distributed.{module[len('shoal.'):]}." in str(info.value) or module == "shoal"
    assert stub.__module__ == module  # never pretends to be distributed's


def test_unknown_names_are_still_attribute_errors():
    import shoal.scheduler

    with pytest.raises(AttributeError):
        shoal.scheduler.no_such_name  # noqa: B018
    from shoal.scheduler import state  # submodules still import

    assert state.SchedulerState


def test_status_is_an_enum_that_equals_its_text():
    from shoal.core import Status

    assert Status.running == "running" and Status("closed") is Status.closed
    assert [s.name for s in Status][:5] == ["undefined", "created", "init", "starting", "running"]


def test_comm_address_helpers():
    from shoal.comm import get_address_host, get_address_host_port, get_local_address_for, resolve_address

    assert get_address_host("tcp://10.1.2.3:8786") == "10.1.2.3"
    assert get_address_host_port("tcp://[::1]:8786") == ("::1", 8786)
    assert resolve_address("tcp://localhost:8786") in ("tcp://127.0.0.1:8786", "tcp://[::1]:8786")
    assert get_local_address_for("tcp://127.0.0.1:8786") == "tcp://127.0.0.1"
    with pytest.raises(ValueError, match="in-process"):
        get_address_host_port("inproc://1/2")
