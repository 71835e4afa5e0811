"""shoal's native joblib backend ("shoal"), without the compatibility mode."""

from __future__ import annotations

import pytest

joblib = pytest.importorskip("joblib")

import shoal.joblib_backend  # noqa: E402,F401  registers "shoal"
from joblib import Parallel, delayed, parallel_config  # noqa: E402


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def test_parallel_runs_batches_as_tasks(client):
    with parallel_config(backend="shoal"):
        out = Parallel(n_jobs=-1)(delayed(square)(i) for i in range(200))
    assert out == [i * i for i in range(200)]
    keys = [str(r["key"]) for r in client.get_task_stream()]
    assert any(k.startswith("joblib-batch") for k in keys)


def test_errors_reach_the_caller_with_their_type(client):
    with parallel_config(backend="shoal"), pytest.raises(ValueError, match="bad value 7"):
        Parallel(n_jobs=2)(delayed(fail_on)(i, 7) for i in range(20))


def test_scikit_learn_grid_search(client):
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=200, n_features=6, random_state=1)
    grid = {"C": [0.01, 0.1, 1.0]}
    with parallel_config(backend="shoal"):
        remote = GridSearchCV(LogisticRegression(), grid, cv=3).fit(X, y)
    local = GridSearchCV(LogisticRegression(), grid, cv=3, n_jobs=1).fit(X, y)
    assert remote.best_params_ == local.best_params_


def test_effective_n_jobs_is_the_cluster_threads(client):
    from shoal.joblib_backend import ShoalBackend

    assert ShoalBackend(client=client).effective_n_jobs(-1) == sum(client.nthreads().values())
