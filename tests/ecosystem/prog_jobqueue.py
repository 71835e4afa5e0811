"""Unchanged user code (but for `worker_command`): dask-jobqueue builds its batch job
script for a shoal cluster; the script's worker command, run here as the batch system
would run it on a node, joins the cluster."""

import shlex
import subprocess
import sys

from dask_jobqueue import SLURMCluster
from distributed import Client

if __name__ == "__main__":
    cluster = SLURMCluster(
        cores=1, memory="1GiB", processes=1, queue="short", walltime="00:10:00",
        scheduler_options={"dashboard_address": None}, python=sys.executable,
        worker_command="shoal.cli worker",
    )  # fmt: skip
    worker = None
    try:
        script = cluster.job_script()
        assert "#SBATCH -p short" in script and "#SBATCH -t 00:10:00" in script, script
        command = script.strip().splitlines()[-1]
        assert command.startswith(f"{sys.executable} -m shoal.cli worker {cluster.scheduler_address}"), command
        # the batch system's part: run the job's worker command (the same user, this host:
        # the worker finds the cluster's secret by address)
        worker = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            (info,) = client.scheduler_info()["workers"].values()
        print("OK jobqueue", type(cluster.scheduler).__module__, info["name"], info["nthreads"], flush=True)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        cluster.close()
