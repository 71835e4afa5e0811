"""Unchanged user code: xarray reads netCDF files in parallel, computes, and writes
netCDF and zarr from the workers (with distributed's locks)."""

import sys

import numpy as np
import pandas as pd
import xarray as xr
from dask.distributed import Client, LocalCluster
from xarray.backends.locks import get_dask_scheduler, get_write_lock

if __name__ == "__main__":
    out = sys.argv[1]
    times = pd.date_range("2026-01-01", periods=30, freq="D")
    rng = np.random.default_rng(0)
    full = xr.Dataset(
        {"t": (("time", "x", "y"), rng.random((30, 20, 10)))},
        coords={"time": times, "x": np.arange(20), "y": np.arange(10)},
    )
    paths = []
    for i in range(3):
        path = f"{out}/part{i}.nc"
        full.isel(time=slice(10 * i, 10 * (i + 1))).to_netcdf(path, engine="h5netcdf")
        paths.append(path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert get_dask_scheduler() == "distributed", get_dask_scheduler()
            lock = get_write_lock(f"{out}/lockcheck.nc")
            assert type(lock).__module__.startswith("shoal"), type(lock)
            ds = xr.open_mfdataset(paths, engine="h5netcdf", parallel=True, combine="by_coords", chunks={"time": 5})
            assert ds.t.chunks is not None
            anomaly = (ds.t - ds.t.mean("time")).std("x")
            np.testing.assert_allclose(anomaly.compute().values, (full.t - full.t.mean("time")).std("x").values)
            written = ds.assign(anomaly=anomaly)
            written.to_netcdf(f"{out}/result.nc", engine="h5netcdf", compute=True)
            written.to_zarr(f"{out}/result.zarr", mode="w", compute=True)
            keys = [str(r["key"]) for r in client.get_task_stream()]
    back = xr.open_dataset(f"{out}/result.nc", engine="h5netcdf").load()
    np.testing.assert_allclose(back.t.values, full.t.values)
    zarr_back = xr.open_zarr(f"{out}/result.zarr").load()
    np.testing.assert_allclose(zarr_back.anomaly.values, back.anomaly.values)
    assert any("open_dataset" in k for k in keys), "the files were not opened on the workers"
    print("OK xarray", dict(back.sizes), len(keys))
