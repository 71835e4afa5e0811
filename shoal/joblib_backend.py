"""joblib's parallel backend on a shoal cluster, registered as `"shoal"`.

    import shoal.joblib_backend                      # registers "shoal" with joblib
    with joblib.parallel_config(backend="shoal"):    # runs on the default client's cluster
        GridSearchCV(...).fit(X, y)

Importing this module registers the backend (`register()` does it again, idempotently);
`import shoal` does it too when joblib was imported first. Each joblib batch is one
task (`Client.submit`, `pure=False`); joblib's auto-batching sizes batches from their
durations, so tiny calls do not become tiny tasks. Results come back through the
futures' done callbacks (a callback thread, never the client's event loop);
`abort_everything` cancels what is still running after an error.

In compatibility mode (`shoal.compat`) joblib's `"dask"` backend is this one too:
joblib's own dask backend drives distributed's client through tornado's `IOLoop` API
(`client.loop.add_callback`), which shoal's asyncio loop does not have.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from joblib.parallel import register_parallel_backend
from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

__all__ = ["ShoalBackend", "register"]


def _run_batch(batch: Any) -> Any:
    return batch()


class ShoalBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend running each batch as a task on a shoal cluster."""

    supports_retrieve_callback = True
    supports_timeout = True
    default_n_jobs = 1

    def __init__(self, client: Any = None, scheduler_host: str | None = None, wait_for_workers_timeout: float = 10,
                 submit_kwargs: dict | None = None, **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        if client is None:
            from shoal.client.client import Client, default_client

            client = Client(scheduler_host, set_as_default=False) if scheduler_host else default_client()
        self.client = client
        self.wait_for_workers_timeout = wait_for_workers_timeout
        self.submit_kwargs = dict(submit_kwargs or {})
        self._futures: set = set()
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        return (ShoalBackend, ())

    def effective_n_jobs(self, n_jobs: int) -> int:
        n = sum(self.client.nthreads().values())
        if n == 0 and self.wait_for_workers_timeout:
            self.client.wait_for_workers(1, timeout=self.wait_for_workers_timeout)
            n = sum(self.client.nthreads().values())
        return max(1, n)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_args: Any) -> int:
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def submit(self, func: Any, callback: Any = None) -> Any:
        key = f"joblib-batch-{uuid.uuid4().hex}"
        future = self.client.submit(_run_batch, func, key=key, pure=False, **self.submit_kwargs)
        with self._lock:
            self._futures.add(future)

        def done(f: Any) -> None:
            with self._lock:
                self._futures.discard(f)
            if callback is not None:
                callback(f)

        future.add_done_callback(done)
        return future

    def retrieve_result_callback(self, future: Any) -> Any:
        return future.result()

    def retrieve_result(self, out: Any, timeout: float | None = None) -> Any:
        return out.result(timeout=timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        with self._lock:
            futures, self._futures = list(self._futures), set()
        if futures:
            self.client.cancel(futures)


def register() -> None:
    """Register `"shoal"` with joblib (idempotent)."""
    register_parallel_backend("shoal", ShoalBackend)


def register_as_dask() -> None:
    """Compatibility mode: joblib's `"dask"` backend is shoal's."""
    import sys

    parallel = sys.modules["joblib.parallel"]  # (joblib itself may still be importing it)
    parallel.EXTERNAL_BACKENDS["dask"] = lambda: register_parallel_backend("dask", ShoalBackend)
    if "dask" in parallel.BACKENDS:
        register_parallel_backend("dask", ShoalBackend)


register()


def _in_compat_mode() -> bool:
    from shoal.compat import installed

    return installed()


if _in_compat_mode():
    register_as_dask()
