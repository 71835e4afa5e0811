"""`Security`: the shared secret every connection proves before anything is unpickled.

This module owns what a secret is: `normalize_secret`, the one encoding shoal uses
everywhere (`bytes` are the secret itself; text is its hexadecimal form, as in
`SHOAL_SECRET`, `--secret-file`, scheduler files, secret files and the
`shoal.security.secret` configuration; empty means none), and `secret_of` (the secret a
client, worker or cluster argument stands for). Where a connector finds a secret it was
not given (secret files by address, the environment) is `shoal.secret_files`'s.
"""

from __future__ import annotations

import secrets
from typing import Any

__all__ = ["Security", "normalize_secret", "secret_of"]


def normalize_secret(secret: Any, where: str = "secret") -> bytes | None:
    """A shared secret as bytes: `bytes` as they are, text as hexadecimal; None, False or
    empty means none. `where` names the source in the error for malformed text."""
    if secret is None or secret is False:
        return None
    if isinstance(secret, (bytes, bytearray, memoryview)):
        return bytes(secret) or None
    if isinstance(secret, int) and not isinstance(secret, bool):
        secret = str(secret)  # dask's config parses an all-digit hex string as a number
    if not isinstance(secret, str):
        raise TypeError(f"{where} must be bytes or hexadecimal text, not {type(secret).__name__}")
    text = secret.strip()
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(
            f"{where} must be the secret in hexadecimal (e.g. the text `shoal scheduler` writes to its "
            f"scheduler file, or Security.secret_hex), or bytes; got text that is not hexadecimal"
        ) from None


def secret_of(security: Any) -> bytes | None:
    """The secret `security` stands for: a `Security` (or anything with `.secret`),
    bytes or hex text, or None / False for the ``shoal.security.secret`` configuration."""
    if security is None or security is False:
        from shoal import config

        return normalize_secret(config.get("security.secret", None), "configuration shoal.security.secret")
    if isinstance(security, (bytes, bytearray, memoryview, str)):
        return normalize_secret(security)
    return normalize_secret(getattr(security, "secret", None))


class Security:
    """Credentials for a cluster. `Security.temporary()` makes a fresh random secret;
    `LocalCluster` does this by default and hands it to its workers and clients.
    `Security()` (no secret) lets the connector find one (`shoal.secret_files`)."""

    def __init__(self, secret: bytes | str | None = None, **kwargs: Any):
        if kwargs:
            unsupported = sorted(kwargs)
            raise TypeError(f"TLS options are not supported yet: {unsupported}")
        self.secret: bytes | None = normalize_secret(secret, "Security(secret)")

    @classmethod
    def temporary(cls) -> Security:
        return cls(secrets.token_bytes(32))

    @property
    def secret_hex(self) -> str | None:
        """The secret as the hexadecimal text `SHOAL_SECRET` and `Security(...)` accept."""
        return self.secret.hex() if self.secret else None

    def __repr__(self) -> str:
        return f"Security(secret={'<hidden>' if self.secret else None})"
