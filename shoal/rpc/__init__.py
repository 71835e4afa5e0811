"""Request/reply and message dispatch on top of `shoal.comm`, and connection pooling."""
from shoal.rpc.core import ConnectionPool, Peer, RemoteError

__all__ = ["ConnectionPool", "Peer", "RemoteError"]
