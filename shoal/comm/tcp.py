"""TCP transport: connecting, listening, and both halves of the handshake, over the TCP
comm of `tcp_comm.py` (one connection's reading and writing).

`connect` makes one attempt plus the client's handshake (`shoal.comm.core.connect`
retries); `TCPListener` accepts connections and runs the server's handshake before a
comm reaches its handler. Handshake failures become
:class:`~shoal.comm.errors.AuthenticationError` or
:class:`~shoal.comm.errors.ProtocolMismatchError` here.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from shoal.comm.addressing import parse_host_port, unparse_host_port
from shoal.comm.core import Comm, Listener
from shoal.comm.errors import AuthenticationError, CommClosedError, ProtocolMismatchError
from shoal.comm.tcp_comm import TCP, ForeignProtocolError, set_tcp_timeout
from shoal.protocol import handshake as hs

__all__ = ["TCP", "ForeignProtocolError", "TCPListener", "connect", "make_listener", "set_tcp_timeout"]


def _handshake_error(exc: hs.HandshakeError, address: str) -> AuthenticationError:
    if exc.kind == "auth":
        return AuthenticationError(str(exc))
    if exc.kind == "version":
        return ProtocolMismatchError(str(exc))
    return ProtocolMismatchError(f"{address} does not speak the shoal protocol: {exc}")


async def _read_handshake(comm: TCP) -> dict:
    try:
        frames = await comm.read()
    except CommClosedError:
        if comm.protocol_error is not None:
            raise hs.HandshakeError(str(comm.protocol_error)) from None
        raise
    return hs.decode_handshake(frames)


async def _client_handshake(comm: TCP, secret: bytes | None, info: dict | None, address: str) -> None:
    try:
        hello, client_nonce = hs.make_hello(info)
        comm.send_raw(hs.encode_handshake(hello))
        welcome = await _read_handshake(comm)
        server_nonce, peer_info, _ = hs.check_welcome(welcome, secret, address)
        comm.send_raw(hs.encode_handshake(hs.make_proof(secret, server_nonce, client_nonce)))
        result = await _read_handshake(comm)
        hs.check_result(result, secret, server_nonce, client_nonce, address)
    except hs.HandshakeError as exc:
        raise _handshake_error(exc, address) from None
    comm.peer_info = peer_info


async def connect(
    loc: str, *, address: str, secret: bytes | None, info: dict | None, max_packet_bytes: int
) -> TCP:
    """One connection attempt plus handshake (``core.connect`` retries)."""
    host, port = parse_host_port(loc)
    if not host:
        host = "127.0.0.1"
    loop = asyncio.get_running_loop()
    comm = TCP(loop, max_packet_bytes)
    await loop.create_connection(lambda: comm, host, port)
    try:
        await _client_handshake(comm, secret, info, address)
    except BaseException:
        comm.abort()
        raise
    return comm


# ====================================================================== listener

_WILDCARDS = {"0.0.0.0", "::", ""}


def _contact_host(host: str) -> str:
    if host not in _WILDCARDS:
        return host
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))  # no packet is sent
            return s.getsockname()[0]
    except OSError:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class TCPListener(Listener):
    """Listens on a TCP address; see :class:`shoal.comm.core.Listener`."""

    _has_handshake = True

    def __init__(self, loc: str, handler: Any, *, secret: bytes | None, info: dict | None, max_packet_bytes: int) -> None:
        super().__init__(handler, secret=secret, info=info, max_packet_bytes=max_packet_bytes)
        host, port = parse_host_port(loc, default_port=0)
        self._host = host or "127.0.0.1"
        self._port = port
        self._server: asyncio.AbstractServer | None = None
        self.address = ""
        self.contact_address = ""

    def _factory(self) -> TCP:
        comm = TCP(self._loop, self.max_packet_bytes)
        comm.on_connect = self._accept
        comm.answer_foreign = str((self.info or {}).get("role") or "server")
        return comm

    async def _start(self) -> None:
        self._server = await self._loop.create_server(
            self._factory, self._host, self._port, reuse_address=True, backlog=1024
        )
        sockname = self._server.sockets[0].getsockname()
        bound_host, bound_port = str(sockname[0]), int(sockname[1])
        self.address = "tcp://" + unparse_host_port(bound_host, bound_port)
        self.contact_address = "tcp://" + unparse_host_port(_contact_host(bound_host), bound_port)

    def _stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def _handshake(self, comm: Comm) -> None:
        assert isinstance(comm, TCP)
        secret = self._secret
        try:
            hello = await _read_handshake(comm)
            try:
                client_nonce, peer_info = hs.check_hello(hello)
            except hs.HandshakeError as exc:
                if exc.kind == "version":
                    comm.send_raw(hs.encode_handshake(hs.make_version_error(hello.get("shoal"))))
                    await comm.close()
                raise
            welcome, server_nonce = hs.make_welcome(self.info, secret is not None)
            comm.send_raw(hs.encode_handshake(welcome))
            proof = await _read_handshake(comm)
            try:
                hs.check_proof(proof, secret, server_nonce, client_nonce)
            except hs.HandshakeError:
                comm.send_raw(hs.encode_handshake(hs.make_auth_error()))
                await comm.close()
                raise
            comm.send_raw(hs.encode_handshake(hs.make_result(secret, server_nonce, client_nonce)))
        except CommClosedError as exc:
            raise CommClosedError(f"peer closed the connection during the handshake ({exc})") from None
        comm.peer_info = peer_info


def make_listener(
    loc: str, handler: Any, *, secret: bytes | None, info: dict | None, max_packet_bytes: int
) -> TCPListener:
    return TCPListener(loc, handler, secret=secret, info=info, max_packet_bytes=max_packet_bytes)
