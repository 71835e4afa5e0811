"""Unchanged user code: dask-ml's Incremental and GridSearchCV on a cluster."""

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from dask_ml.model_selection import GridSearchCV
from dask_ml.wrappers import Incremental
from sklearn.linear_model import SGDClassifier
from sklearn.tree import DecisionTreeClassifier

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(2000, 5))
    yn = (Xn[:, 0] + Xn[:, 1] > 0).astype(int)
    X = da.from_array(Xn, chunks=(250, 5))
    y = da.from_array(yn, chunks=250)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            inc = Incremental(SGDClassifier(random_state=0, tol=None, max_iter=5), scoring="accuracy")
            inc.fit(X, y, classes=[0, 1])
            score = inc.score(X, y)
            assert score > 0.9, score
            search = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3, 5]}, cv=3)
            search.fit(Xn, yn)
            assert search.best_params_["max_depth"] in (3, 5), search.best_params_
            tasks = len(client.get_task_stream())
    assert tasks > 0
    print("OK dask-ml", round(float(score), 3), search.best_params_, tasks)
