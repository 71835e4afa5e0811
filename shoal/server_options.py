"""Constructor options of distributed's `Scheduler`, `Worker` and `Nanny` that shoal does
not honour: accepted at distributed's default, refused by name otherwise.

A program written for distributed may pass any of its servers' options. Those shoal
honours are real parameters of shoal's servers; the ones below are parameters too (so
the signatures match), but a value other than distributed's default raises
`NotImplementedError` naming the option and what to use instead: silently ignoring a
setting is how a program ends up doing something else than its author asked.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UNSUPPORTED", "refuse"]

_NO_TLS = "shoal has no TLS yet: the shared secret authenticates (security=Security(secret))"

#: option -> (the values meaning "not used", why it is refused / what to use instead)
UNSUPPORTED: dict[str, tuple[tuple, str]] = {
    "services": ((None, {}), "shoal's servers run no extra services; the dashboard is built in (dashboard_address=)"),
    "service_kwargs": ((None, {}), "shoal's servers run no extra services"),
    "extensions": ((None,), "add extensions after construction with server.add_extension(name, extension)"),
    "http_prefix": ((None, "/"), "shoal's dashboard is served at /"),
    "jupyter": ((None, False), "shoal's scheduler runs no Jupyter server"),
    "transition_counter_max": ((None, False), "a debugging aid of distributed's state machines; use validate=True"),
    "contact_address": ((None,), "a shoal server advertises the address it listens on (host=, port=)"),
    "listen_address": ((None,), "give host= and port= (or worker_port=)"),
    "executor": ((None,), "tasks run on the worker's own thread pool (nthreads=)"),
    "metrics": ((None,), "shoal's workers send a fixed set of metrics (cpu, memory, fds, network)"),
    "startup_information": ((None,), "shoal's workers send no custom start-up information"),
    "low_level_profiler": ((None, False), "shoal's profiler samples Python frames only"),
    "profile_cycle_interval": ((None,), "set the config key shoal.worker.profile.cycle"),
    "scheduler_sni": ((None,), _NO_TLS),
    "WorkerStateClass": ((None,), "shoal's worker state machine is not replaceable"),
    "reconnect": ((None, False), "a shoal worker whose scheduler goes away closes; its nanny (if any) starts a new one"),
    "dashboard": ((None, False), "shoal's workers serve no dashboard of their own; the scheduler's shows them"),
    "dashboard_address": ((None,), "shoal's workers serve no dashboard of their own; the scheduler's shows them"),
    "worker_class": ((None,), "a shoal nanny runs shoal's Worker; use LocalCluster(worker_class=...) for a nanny class"),
}


def refuse(owner: str, **given: Any) -> None:
    """`NotImplementedError` for the first option of `given` set to something else than
    a value meaning "not used" (see `UNSUPPORTED`), naming it and the alternative."""
    for name, value in given.items():
        unused, why = UNSUPPORTED[name]
        if any(value is u or (u is not None and value == u) for u in unused):
            continue
        raise NotImplementedError(f"{owner}({name}={value!r}) is not supported by shoal: {why}")


def scheduler_address(scheduler_ip: Any, scheduler_port: Any = None) -> str | None:
    """distributed's `scheduler_ip` (an address, or a host) and `scheduler_port` as one address."""
    if scheduler_ip is None:
        return None
    text = str(scheduler_ip)
    if "://" in text:
        return text if scheduler_port is None or text.rsplit(":", 1)[-1].isdigit() else f"{text}:{scheduler_port}"
    if ":" in text and text.rsplit(":", 1)[-1].isdigit() and scheduler_port is None:
        return f"tcp://{text}"
    return f"tcp://{text}:{scheduler_port if scheduler_port is not None else 8786}"


def host_of_interface(interface: str) -> str:
    """The IPv4 address of network interface `interface` (``"eth0"``, ``"lo"``)."""
    import socket

    import psutil

    addresses = psutil.net_if_addrs()
    if interface not in addresses:
        raise ValueError(f"interface={interface!r}: no such network interface (there are {sorted(addresses)})")
    for a in addresses[interface]:
        if a.family == socket.AF_INET:
            return a.address
    raise ValueError(f"interface={interface!r} has no IPv4 address")


def check_protocol(owner: str, protocol: Any, allowed: tuple[str, ...] = ("tcp",)) -> str | None:
    """`protocol` without its ``://``, refused unless one of `allowed` ("tls": no TLS yet)."""
    if protocol is None:
        return None
    name = str(protocol).removesuffix("://")
    if name not in allowed:
        why = _NO_TLS if name == "tls" else f"shoal's {owner} speaks {' or '.join(allowed)}"
        raise NotImplementedError(f"{owner}(protocol={protocol!r}) is not supported by shoal: {why}")
    return name
