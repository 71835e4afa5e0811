"""`Security`: the shared secret every connection proves before anything is unpickled."""

from __future__ import annotations

import secrets
from typing import Any


class Security:
    """Credentials for a cluster. `Security.temporary()` makes a fresh random secret;
    `LocalCluster` does this by default and hands it to its workers and clients."""

    def __init__(self, secret: bytes | str | None = None, **kwargs: Any):
        if kwargs:
            unsupported = sorted(kwargs)
            raise TypeError(f"TLS options are not supported yet: {unsupported}")
        self.secret: bytes | None = secret.encode() if isinstance(secret, str) else secret

    @classmethod
    def temporary(cls) -> Security:
        return cls(secrets.token_bytes(32))

    def __repr__(self) -> str:
        return f"Security(secret={'<hidden>' if self.secret else None})"
