"""Exceptions raised by shoal transports.

This module owns the comm layer's error types.  OS and asyncio errors are mapped to
these in ``shoal.comm`` only; layers above catch these, never socket errors.
"""

from __future__ import annotations

__all__ = ["CommClosedError", "AuthenticationError", "ProtocolMismatchError"]


class CommClosedError(OSError):
    """The connection is closed (by either side, or by a network error)."""


class AuthenticationError(ConnectionError):
    """The handshake failed: wrong or missing security token, or unauthenticated peer."""


class ProtocolMismatchError(AuthenticationError):
    """The peer does not speak this version of the shoal protocol (or no shoal at all)."""
