"""distributed's address helpers that look at this machine or ask the resolver:
`get_address_host`, `get_address_host_port`, `resolve_address`, `get_local_address_for`
(`distributed.comm`'s names; libraries such as dask-cuda and lightgbm use them)."""

from __future__ import annotations

import socket

from shoal.comm.addressing import normalize_address, parse_address, parse_host_port, unparse_address, unparse_host_port

__all__ = ["get_address_host", "get_address_host_port", "get_local_address_for", "resolve_address"]


def get_address_host_port(addr: str) -> tuple[str, int]:
    """`("127.0.0.1", 8786)` for `"tcp://127.0.0.1:8786"` (`ValueError` for an in-process
    address, which has no host and port)."""
    scheme, loc = parse_address(addr)
    if scheme == "inproc":
        raise ValueError(f"{addr!r} is an in-process address: it has no host and port")
    return parse_host_port(loc)


def get_address_host(addr: str) -> str:
    """The host part of an address (an in-process address's host is this machine's
    loopback)."""
    scheme, loc = parse_address(addr)
    if scheme == "inproc":
        return "127.0.0.1"
    return parse_host_port(loc, 0)[0]


def resolve_address(addr: str) -> str:
    """The address with its host name resolved to an IP address."""
    scheme, loc = parse_address(normalize_address(addr))
    if scheme == "inproc":
        return unparse_address(scheme, loc)
    host, port = parse_host_port(loc, 0)
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return unparse_address(scheme, unparse_host_port(info[0][4][0], port))


def get_local_address_for(addr: str) -> str:
    """This machine's address on the interface that reaches `addr` (no packet is sent)."""
    scheme, loc = parse_address(addr)
    if scheme == "inproc":
        return unparse_address(scheme, loc)
    host, _ = parse_host_port(loc, 0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            local = s.getsockname()[0]
        except OSError:
            local = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return unparse_address(scheme, unparse_host_port(local))
