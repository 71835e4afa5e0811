"""The functions a shuffle's tasks run on a worker: transfer, barrier, unpack.

They find the worker's shuffle service (`worker.py`) through the running task's
worker, and fail with a clear error when run anywhere else (dask's local schedulers):
a graph rewritten for the service only runs on a shoal cluster.
"""

from __future__ import annotations

from typing import Any

__all__ = ["shuffle_transfer", "shuffle_barrier", "shuffle_unpack", "ShuffleUnavailable"]


class ShuffleUnavailable(RuntimeError):
    """A shuffle-service task ran outside a shoal worker."""


def _service() -> Any:
    from shoal._context import current_worker

    worker: Any = current_worker()
    if worker is None:
        raise ShuffleUnavailable(
            "this graph was rewritten for shoal's shuffle service and runs only on a shoal cluster"
        )
    ext = getattr(worker, "extensions", {}).get("shuffle")
    if ext is None:
        raise ShuffleUnavailable(f"worker {worker.address} has no shuffle service")
    return ext


def shuffle_transfer(df: Any, shuffle: Any, inp: int) -> int:
    """Split input partition `inp` and hand its pieces to their owners; -> the run id."""
    return _service().transfer(shuffle, inp, df)


def shuffle_barrier(spec: Any, *run_ids: int) -> int:
    """Every transfer ran: wait until all their pieces are stored by their owners;
    -> the run id the outputs assemble from."""
    ids = set(run_ids)
    if len(ids) > 1:
        raise RuntimeError(f"shuffle {spec.id}: transfers of different runs {sorted(ids)} met at the barrier")
    if not ids:
        return 0
    run_id = ids.pop()
    _service().barrier(spec, run_id)
    return run_id


def shuffle_unpack(shuffle: Any, part: int, run_id: int) -> Any:
    """Output partition `part`, assembled from the pieces this worker received."""
    return _service().unpack(shuffle, part, run_id)
