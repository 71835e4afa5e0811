"""Transports: connections that carry batches of shoal messages.

This package owns the comm layer (TCP and in-process transports, addressing, the
connection handshake's I/O and the mapping of OS errors to shoal errors).  Use
:func:`connect` and :func:`listen`; everything else is transport detail.
"""

from shoal.comm.addressing import (
    normalize_address,
    parse_address,
    parse_host_port,
    unparse_address,
    unparse_host_port,
)
from shoal.comm.core import DEFAULT_MAX_PACKET, Comm, Listener, connect, listen
from shoal.comm.errors import AuthenticationError, CommClosedError, ProtocolMismatchError
from shoal.comm.resolve import get_address_host, get_address_host_port, get_local_address_for, resolve_address

__all__ = [
    "Comm",
    "Listener",
    "connect",
    "listen",
    "DEFAULT_MAX_PACKET",
    "CommClosedError",
    "AuthenticationError",
    "ProtocolMismatchError",
    "parse_address",
    "unparse_address",
    "parse_host_port",
    "unparse_host_port",
    "normalize_address",
    "get_address_host",
    "get_address_host_port",
    "get_local_address_for",
    "resolve_address",
]

from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    dict.fromkeys(
        ["get_tcp_server_address", "get_tcp_server_addresses"],
        "distributed's listener internals; use the server's `address` (Scheduler.address, Worker.address)",
    ),
)
