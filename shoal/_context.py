"""Which task, on which worker, the current thread is running (a thread-local).

Set by the worker's executor threads; read by `get_worker`, `secede`/`rejoin` and by
the client (so `Client.get` inside a task can give its thread back while it waits).
Vocabulary shared by the layers, so none of them imports another for it.

Also the few late-bound *providers*: a lower layer that must reach a higher one at run
time looks it up here, and the higher layer registers itself when it is imported
(`shoal/__init__.py` imports them all), so no import goes up the ladder:

- ``"local_cluster"``: `LocalCluster` (registered by `shoal.deploy.local`), for a `Client()`
  without an address;
- ``"get_client"``: `shoal.worker_client.get_client`, for an actor proxy that needs a
  client.
"""

from __future__ import annotations

import threading

#: attributes: worker, key, run_id, seceded (set only in worker executor threads)
task_state = threading.local()


def current_worker() -> object | None:
    return getattr(task_state, "worker", None)


def in_task() -> bool:
    return getattr(task_state, "key", None) is not None


_providers: dict[str, object] = {}


def register_provider(name: str, provider: object) -> None:
    """Make `provider` what `provider(name)` returns (see the module docstring)."""
    _providers[name] = provider


def provider(name: str):  # noqa: ANN201 - whatever was registered
    """What a higher layer registered under `name`."""
    try:
        return _providers[name]
    except KeyError:
        raise RuntimeError(f"nothing registered as {name!r}: import shoal first") from None
