"""Typos fail as in distributed (TypeError); `distributed.*` settings are read through
their `shoal.*` twins, and the ones without a twin are named once."""

from __future__ import annotations

import warnings

import dask.config
import pytest

from shoal import Client, LocalCluster, SpecCluster, config
from shoal.worker.server import Worker
from tests.task_functions import inc


def test_client_typo_raises_type_error():
    with pytest.raises(TypeError, match="'n_wokers'.*did you mean 'n_workers'"):
        Client(n_wokers=2, processes=False, dashboard_address=None)


def test_local_cluster_typo_raises_type_error():
    with pytest.raises(TypeError, match="'memory_limt'.*did you mean 'memory_limit'"):
        LocalCluster(memory_limt="1GiB", processes=False, dashboard_address=None)


def test_local_cluster_typo_with_nannies_keeps_its_hint():
    # a Nanny passes its **kwargs on to its worker: that does not make every name valid
    with pytest.raises(TypeError, match="'memory_limt'.*did you mean 'memory_limit'"):
        LocalCluster(memory_limt="1GiB", processes=True, dashboard_address=None)


def test_spec_cluster_typo_raises_type_error():
    with pytest.raises(TypeError, match="workerz"):
        SpecCluster(workerz={})


def test_distributed_worker_option_the_worker_class_lacks_is_a_warning_not_silence():
    with pytest.warns(UserWarning, match="preload_nanny"):  # a nanny's option; these workers have none
        with LocalCluster(n_workers=1, processes=False, dashboard_address=None, preload_nanny=["x"]) as cluster:
            with Client(cluster, set_as_default=False) as c:
                assert c.submit(inc, 1).result() == 2


def test_distributed_worker_options_are_honoured_or_refused_by_name():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, lifetime="1h", lifetime_stagger="1s") as cl:
        (worker,) = cl.workers.values()
        assert 3599 <= worker.options.lifetime <= 3601
    with pytest.raises(NotImplementedError, match=r"Worker\(executor='processes'\) is not supported by shoal"):
        LocalCluster(n_workers=1, processes=False, dashboard_address=None, executor="processes")


def test_worker_options_reach_the_workers(tmp_path):
    with LocalCluster(
        n_workers=1, processes=False, dashboard_address=None, local_directory=str(tmp_path), validate=True
    ) as cluster:
        (worker,) = cluster.workers.values()
        assert isinstance(worker, Worker) and worker.validate is True
        assert str(worker.local_directory).startswith(str(tmp_path))


def test_distributed_twin_is_read_when_shoal_key_is_default():
    assert config.get("scheduler.allowed-failures") == 3
    with dask.config.set({"distributed.scheduler.allowed-failures": 7}):
        assert config.get("scheduler.allowed-failures") == 7
        with dask.config.set({"shoal.scheduler.allowed-failures": 5}):
            assert config.get("scheduler.allowed-failures") == 5  # shoal's own key wins
    assert config.get("scheduler.allowed-failures") == 3


def test_distributed_twin_reaches_the_scheduler():
    with dask.config.set({"distributed.scheduler.allowed-failures": 9}):
        with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
            assert cluster.scheduler.state.allowed_failures == 9


def test_distributed_env_variable_is_read(monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MEMORY__TARGET", "0.42")
    saved = dask.config.config.copy()
    try:
        dask.config.refresh()
        assert config.get("worker.memory.target") == 0.42
    finally:
        monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__MEMORY__TARGET")
        dask.config.config.clear()
        dask.config.config.update(saved)


def test_untwinned_distributed_key_is_warned_about_once():
    with dask.config.set({"distributed.scheduler.no-such-knob-for-shoal": 1}):
        with pytest.warns(UserWarning, match="distributed.scheduler.no-such-knob-for-shoal"):
            config.warn_untwinned()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert config.warn_untwinned() == []
