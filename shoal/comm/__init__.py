"""Transports: connections that carry batches of shoal messages.

This package owns the comm layer (TCP and in-process transports, addressing, the
connection handshake's I/O and the mapping of OS errors to shoal errors).  Use
:func:`connect` and :func:`listen`; everything else is transport detail.
"""

from shoal.comm.addressing import parse_address, parse_host_port, unparse_address, unparse_host_port
from shoal.comm.core import DEFAULT_MAX_PACKET, Comm, Listener, connect, listen
from shoal.comm.errors import AuthenticationError, CommClosedError, ProtocolMismatchError

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
]
