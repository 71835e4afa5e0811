"""Address strings: ``scheme://location`` parsing and formatting (pure).

This module owns the address syntax shoal accepts: ``tcp://host:port`` (the default
scheme when none is given), ``tcp://[::1]:port`` for IPv6, and ``inproc://pid/n``
for in-process transports.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_SCHEME",
    "KNOWN_SCHEMES",
    "parse_address",
    "unparse_address",
    "parse_host_port",
    "unparse_host_port",
    "normalize_address",
    "is_loopback_host",
    "is_loopback_address",
]

DEFAULT_SCHEME = "tcp"
KNOWN_SCHEMES = frozenset({"tcp", "inproc"})


def parse_address(addr: str, *, strict: bool = False) -> tuple[str, str]:
    """Split ``"tcp://127.0.0.1:8786"`` into ``("tcp", "127.0.0.1:8786")``.

    An address without a scheme is TCP (unless ``strict``).  Raises ``ValueError``
    naming an unknown scheme.
    """
    if not isinstance(addr, str):
        raise TypeError(f"expected an address string, got {type(addr).__name__}: {addr!r}")
    scheme, sep, loc = addr.partition("://")
    if not sep:
        if strict:
            raise ValueError(f"address {addr!r} has no scheme (expected e.g. 'tcp://{addr}')")
        scheme, loc = DEFAULT_SCHEME, addr
    scheme = scheme.lower()
    if scheme not in KNOWN_SCHEMES:
        raise ValueError(
            f"unknown address scheme {scheme!r} in {addr!r} (known: {', '.join(sorted(KNOWN_SCHEMES))})"
        )
    return scheme, loc


def unparse_address(scheme: str, loc: str) -> str:
    """Inverse of :func:`parse_address`."""
    return f"{scheme}://{loc}"


def normalize_address(addr: str) -> str:
    """``"127.0.0.1:8786"`` -> ``"tcp://127.0.0.1:8786"``."""
    return unparse_address(*parse_address(addr))


def parse_host_port(hostport: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[v6]:port"``) into ``(host, port)``.

    When there is no port, ``default_port`` is used; without one that is an error.
    A bare IPv6 address (several colons, no brackets) is taken as a host.
    """
    def _port(text: str) -> int:
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"invalid port {text!r} in address {hostport!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range in address {hostport!r}")
        return port

    def _default() -> int:
        if default_port is None:
            raise ValueError(f"address {hostport!r} has no port")
        return int(default_port)

    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        if not sep:
            raise ValueError(f"unbalanced brackets in address {hostport!r}")
        if not rest:
            return host, _default()
        if not rest.startswith(":"):
            raise ValueError(f"invalid address {hostport!r}")
        return host, (_port(rest[1:]) if rest[1:] else _default())
    if hostport.count(":") > 1:  # bare IPv6 literal
        return hostport, _default()
    host, sep, port = hostport.partition(":")
    if not sep or not port:
        return host, _default()
    return host, _port(port)


def unparse_host_port(host: str, port: int | None = None) -> str:
    """``("::1", 8786)`` -> ``"[::1]:8786"``; ``("h", None)`` -> ``"h"``."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine's loopback interface only: ``""`` (no host),
    ``localhost``, ``127.x.x.x``, ``::1`` (with or without brackets). The one check that
    decides whether listening without a secret is refused."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("", "localhost", "::1"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


def is_loopback_address(address: str) -> bool:
    """Whether a listen address (``tcp://127.0.0.1:0``, ``inproc://``, ``:8786``) is
    reachable from this machine only."""
    scheme, loc = parse_address(address)
    if scheme == "inproc":
        return True
    if loc.startswith("["):
        host = loc[: loc.index("]") + 1] if "]" in loc else loc
    else:
        host = loc.rsplit(":", 1)[0] if ":" in loc else loc
    return is_loopback_host(host)
