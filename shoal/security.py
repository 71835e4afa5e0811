"""`Security`: the shared secret every connection proves before anything is unpickled.

A secret is `bytes`, or text holding it in hexadecimal: the one encoding shoal uses
everywhere (`SHOAL_SECRET`, `--secret-file`, scheduler files, configuration). Where a
connector finds a secret it was not given is `shoal.secret_files`'s.
"""

from __future__ import annotations

import secrets
from typing import Any


class Security:
    """Credentials for a cluster. `Security.temporary()` makes a fresh random secret;
    `LocalCluster` does this by default and hands it to its workers and clients.
    `Security()` (no secret) lets the connector find one (`shoal.secret_files`)."""

    def __init__(self, secret: bytes | str | None = None, **kwargs: Any):
        if kwargs:
            unsupported = sorted(kwargs)
            raise TypeError(f"TLS options are not supported yet: {unsupported}")
        from shoal.secret_files import parse_secret

        self.secret: bytes | None = parse_secret(secret, "Security(secret)")

    @classmethod
    def temporary(cls) -> Security:
        return cls(secrets.token_bytes(32))

    @property
    def secret_hex(self) -> str | None:
        """The secret as the hexadecimal text `SHOAL_SECRET` and `Security(...)` accept."""
        return self.secret.hex() if self.secret else None

    def __repr__(self) -> str:
        return f"Security(secret={'<hidden>' if self.secret else None})"
