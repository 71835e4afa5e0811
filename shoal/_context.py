"""Which task, on which worker, the current thread is running (a thread-local).

Set by the worker's executor threads; read by `get_worker`, `secede`/`rejoin` and by
the client (so `Client.get` inside a task can give its thread back while it waits).
Vocabulary shared by the layers, so none of them imports another for it.
"""

from __future__ import annotations

import threading

#: attributes: worker, key, run_id, seceded (set only in worker executor threads)
task_state = threading.local()


def current_worker() -> object | None:
    return getattr(task_state, "worker", None)


def in_task() -> bool:
    return getattr(task_state, "key", None) is not None
