"""`Security`: the shared secret every connection proves before anything is unpickled.

This module owns what a secret is: `normalize_secret` (the one normalisation: ``str``
is UTF-8 encoded, empty means none) and `secret_of` (the secret a client, worker or
cluster argument stands for: a `Security`, raw bytes or str, or None for the
``shoal.security.secret`` configuration).
"""

from __future__ import annotations

import secrets
from typing import Any

__all__ = ["Security", "normalize_secret", "secret_of"]


def normalize_secret(secret: Any) -> bytes | None:
    """A shared secret as bytes (``str`` is UTF-8 encoded; empty means none)."""
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    elif isinstance(secret, (bytearray, memoryview)):
        secret = bytes(secret)
    elif not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes or str, not {type(secret).__name__}")
    return secret or None


def secret_of(security: Any) -> bytes | None:
    """The secret `security` stands for: a `Security` (or anything with `.secret`),
    bytes or str, or None / False for the ``shoal.security.secret`` configuration."""
    if security is None or security is False:
        from shoal import config

        return normalize_secret(config.get("security.secret", None))
    if isinstance(security, (bytes, bytearray, memoryview, str)):
        return normalize_secret(security)
    return normalize_secret(getattr(security, "secret", None))


class Security:
    """Credentials for a cluster. `Security.temporary()` makes a fresh random secret;
    `LocalCluster` does this by default and hands it to its workers and clients."""

    def __init__(self, secret: bytes | str | None = None, **kwargs: Any):
        if kwargs:
            unsupported = sorted(kwargs)
            raise TypeError(f"TLS options are not supported yet: {unsupported}")
        self.secret: bytes | None = normalize_secret(secret)

    @classmethod
    def temporary(cls) -> Security:
        return cls(secrets.token_bytes(32))

    def __repr__(self) -> str:
        return f"Security(secret={'<hidden>' if self.secret else None})"
