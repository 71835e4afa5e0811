"""The ecosystem, for real: libraries written for distributed, installed from the package
registry (the test extras), run unchanged under shoal's compatibility mode, each in a
`python -m shoal.compat` process of its own, on small data generated there. Each program
checks its results against a local computation and prints one OK line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

PROGRAMS = Path(__file__).resolve().parents[1] / "ecosystem"
ROOT = PROGRAMS.parents[1]


def run_program(name: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_COMPAT"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "shoal.compat", str(PROGRAMS / f"prog_{name}.py"), *args],
        capture_output=True, text=True, timeout=240, env=env, cwd=args[0] if args else None,
    )  # fmt: skip
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_joblib_dask_backend_with_scikit_learn():
    pytest.importorskip("sklearn")
    out = run_program("joblib_sklearn")
    assert "OK joblib" in out


def test_xarray_open_mfdataset_to_netcdf_and_zarr(tmp_path):
    pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    pytest.importorskip("zarr")
    out = run_program("xarray", str(tmp_path))
    assert "OK xarray {'time': 30, 'x': 20, 'y': 10}" in out
    assert (tmp_path / "result.nc").exists() and (tmp_path / "result.zarr").is_dir()


def test_dask_ml_incremental_and_grid_search():
    pytest.importorskip("dask_ml")
    out = run_program("dask_ml")
    assert "OK dask-ml" in out


def test_lightgbm_dask_training():
    pytest.importorskip("lightgbm")
    out = run_program("lightgbm")
    assert "OK lightgbm" in out and out.strip().endswith(" 2")


def test_dask_jobqueue_job_script_runs_a_shoal_worker(tmp_path):
    pytest.importorskip("dask_jobqueue")
    out = run_program("jobqueue", str(tmp_path))
    assert "OK jobqueue shoal.scheduler.server dummy-name 1" in out
