"""Unchanged user code: lightgbm.dask trains across two worker processes."""

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from lightgbm.dask import DaskLGBMClassifier

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(2000, 4))
    yn = (Xn[:, 0] - Xn[:, 2] > 0).astype(int)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            X = da.from_array(Xn, chunks=(500, 4)).persist()
            y = da.from_array(yn, chunks=500).persist()
            model = DaskLGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)
            model.fit(X, y)
            predicted = model.predict(X).compute()
            workers = len(client.scheduler_info()["workers"])
    accuracy = float((predicted == yn).mean())
    assert accuracy > 0.9, accuracy
    print("OK lightgbm", round(accuracy, 3), workers)
