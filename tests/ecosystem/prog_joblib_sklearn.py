"""Unchanged user code: scikit-learn's GridSearchCV on joblib's "dask" backend."""

import numpy as np
from distributed import Client, LocalCluster
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

if __name__ == "__main__":
    X, y = make_classification(n_samples=300, n_features=10, random_state=0)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            with parallel_config(backend="dask"):
                search = GridSearchCV(SVC(), grid, cv=3).fit(X, y)
            stream = client.get_task_stream()
    local = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    assert search.best_params_ == local.best_params_, (search.best_params_, local.best_params_)
    assert np.allclose(search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    ran_on_cluster = sum(1 for r in stream if str(r["key"]).startswith("joblib-batch"))
    assert ran_on_cluster > 0, "no joblib batch ran on the cluster"
    print("OK joblib", search.best_params_, ran_on_cluster)
