"""Connection handshake: protocol version check and mutual shared-secret proof.

This module owns the handshake *messages* (pure: builders and checkers only; the
transports in ``shoal.comm`` send and receive them).  Every connection runs it
before anything else is decoded, let alone unpickled.

Each step is one packet (see :mod:`shoal.protocol.framing`) whose body holds one
msgpack map; no ``Pickled`` (no msgpack extension at all) is accepted, and a
handshake packet may not exceed :data:`MAX_HANDSHAKE_BYTES`.  The flow is always
four packets, so each side knows the first two packets it reads are handshake::

    1. connector -> listener   {"shoal": PROTOCOL_VERSION, "nonce": cn, "info": {...}}
    2. listener  -> connector  {"shoal": PROTOCOL_VERSION, "nonce": sn, "info": {...}, "auth": bool}
                          or   {"error": "protocol version mismatch: ..."}      (then closes)
    3. connector -> listener   {"proof": HMAC(secret, b"client" + sn + cn)}    (auth)
                               {"proof": None}                                  (no auth)
    4. listener  -> connector  {"ok": True, "proof": HMAC(secret, b"server" + cn + sn)}  (auth)
                               {"ok": True, "proof": None}                      (no auth)
                          or   {"error": "authentication failed"}              (then closes)

``cn`` and ``sn`` are 32 fresh random bytes from each side; HMAC is HMAC-SHA256.
``auth`` is true when the listener has a secret.  The connector refuses to go on
(closing the connection after step 2) when exactly one side has a secret: a
connector without one gets :class:`HandshakeError` kind ``"auth"`` saying the
server requires authentication; a connector with one refuses a server that cannot
prove it knows the secret.  After step 4 the connector also checks the server's
proof, so both sides are authenticated.

Errors are :class:`HandshakeError` with a ``kind`` of ``"version"``, ``"auth"`` or
``"protocol"`` (malformed message); the comm layer maps them to its exception types.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Sequence

import msgpack

from shoal.protocol.framing import encode_packet
from shoal.security import normalize_secret

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_HANDSHAKE_BYTES",
    "NONCE_BYTES",
    "HANDSHAKE_PACKETS",
    "HandshakeError",
    "new_nonce",
    "make_hello",
    "check_hello",
    "make_welcome",
    "make_version_error",
    "check_welcome",
    "client_proof",
    "server_proof",
    "make_proof",
    "check_proof",
    "make_result",
    "make_auth_error",
    "check_result",
    "encode_handshake",
    "decode_handshake",
    "as_secret",
]

PROTOCOL_VERSION = 1
MAX_HANDSHAKE_BYTES = 64 * 1024
NONCE_BYTES = 32
#: Number of handshake packets each side reads before normal traffic starts.
HANDSHAKE_PACKETS = 2

AUTH_FAILED = "authentication failed"


class HandshakeError(Exception):
    """The handshake failed.  ``kind`` is ``"version"``, ``"auth"`` or ``"protocol"``."""

    def __init__(self, message: str, kind: str = "protocol") -> None:
        super().__init__(message)
        self.kind = kind


def as_secret(secret: bytes | bytearray | str | None) -> bytes | None:
    """Normalise a shared secret (`shoal.security.normalize_secret`)."""
    return normalize_secret(secret)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def _hmac(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def client_proof(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _hmac(secret, b"client" + server_nonce + client_nonce)


def server_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _hmac(secret, b"server" + client_nonce + server_nonce)


# --------------------------------------------------------------------------- encoding


def encode_handshake(msg: dict) -> list:
    """Wire parts of one handshake packet."""
    return encode_packet([msg])


def _inline_ext(code: int, data: bytes) -> Any:
    raise HandshakeError("handshake messages may not carry serialized objects")


def decode_handshake(frames: Sequence[bytes | bytearray | memoryview]) -> dict:
    """Decode one handshake packet's frames (after the prelude) into its message dict."""
    if len(frames) != 1:
        raise HandshakeError(f"handshake packet has {len(frames)} frames, expected 1")
    body = frames[0]
    if len(body) > MAX_HANDSHAKE_BYTES:
        raise HandshakeError("handshake packet too large")
    try:
        msgs = msgpack.unpackb(
            body, use_list=False, strict_map_key=False, raw=False, ext_hook=_inline_ext
        )
    except HandshakeError:
        raise
    except Exception as exc:
        raise HandshakeError(f"malformed handshake packet: {exc!r}") from None
    if type(msgs) is not tuple or len(msgs) != 1 or type(msgs[0]) is not dict:
        raise HandshakeError("malformed handshake packet: expected one map")
    return msgs[0]


def _nonce(msg: dict) -> bytes:
    nonce = msg.get("nonce")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise HandshakeError("malformed handshake: bad nonce")
    return nonce


def _info(msg: dict) -> dict:
    info = msg.get("info", {})
    if info is None:
        return {}
    if type(info) is not dict:
        raise HandshakeError("malformed handshake: info is not a map")
    return info


def _version_error(theirs: Any) -> str:
    return f"protocol version mismatch: peer speaks {theirs}, this server speaks {PROTOCOL_VERSION}"


# --------------------------------------------------------------------------- steps


def make_hello(info: dict | None) -> tuple[dict, bytes]:
    """Step 1 (connector).  Returns the message and the connector's nonce."""
    nonce = new_nonce()
    return {"shoal": PROTOCOL_VERSION, "nonce": nonce, "info": info or {}}, nonce


def check_hello(msg: dict) -> tuple[bytes, dict]:
    """Step 1 (listener).  Returns ``(client_nonce, client_info)``.

    Raises ``HandshakeError(kind="version")`` whose message is the error to send back
    (:func:`make_version_error`) when the versions differ.
    """
    if "shoal" not in msg:
        raise HandshakeError("not a shoal handshake")
    version = msg["shoal"]
    if version != PROTOCOL_VERSION:
        raise HandshakeError(_version_error(version), kind="version")
    return _nonce(msg), _info(msg)


def make_version_error(peer_version: Any) -> dict:
    return {"error": _version_error(peer_version)}


def make_welcome(info: dict | None, auth: bool) -> tuple[dict, bytes]:
    """Step 2 (listener).  Returns the message and the listener's nonce."""
    nonce = new_nonce()
    return {"shoal": PROTOCOL_VERSION, "nonce": nonce, "info": info or {}, "auth": bool(auth)}, nonce


def check_welcome(msg: dict, secret: bytes | None, address: str = "the server") -> tuple[bytes, dict, bool]:
    """Step 2 (connector).  Returns ``(server_nonce, server_info, auth)``.

    Raises when the listener reported an error, speaks another version, or when
    exactly one of the two sides has a secret.
    """
    if "error" in msg:
        err = str(msg["error"])
        kind = "version" if "version" in err else "auth"
        raise HandshakeError(f"{address} refused the connection: {err}", kind=kind)
    if "shoal" not in msg:
        raise HandshakeError(f"{address} did not answer with a shoal handshake")
    version = msg["shoal"]
    if version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"protocol version mismatch: {address} speaks {version}, this client speaks {PROTOCOL_VERSION}",
            kind="version",
        )
    nonce = _nonce(msg)
    info = _info(msg)
    auth = msg.get("auth")
    if type(auth) is not bool:
        raise HandshakeError("malformed handshake: auth flag missing")
    if auth and secret is None:
        raise HandshakeError(
            f"{address} requires authentication: pass the cluster's security token "
            "(the secret it was started with) when connecting",
            kind="auth",
        )
    if not auth and secret is not None:
        raise HandshakeError(
            f"{address} is not authenticated: it was started without a secret, but this "
            "side has one; refusing to talk to a server that cannot prove it knows the token",
            kind="auth",
        )
    return nonce, info, auth


def make_proof(secret: bytes | None, server_nonce: bytes, client_nonce: bytes) -> dict:
    """Step 3 (connector)."""
    if secret is None:
        return {"proof": None}
    return {"proof": client_proof(secret, server_nonce, client_nonce)}


def check_proof(msg: dict, secret: bytes | None, server_nonce: bytes, client_nonce: bytes) -> None:
    """Step 3 (listener).  Raises ``HandshakeError(kind="auth")`` on a bad proof."""
    if "proof" not in msg:
        raise HandshakeError("malformed handshake: proof missing")
    proof = msg["proof"]
    if secret is None:
        return  # connector only sends a proof when we asked for one; nothing to check
    if type(proof) is not bytes or not hmac.compare_digest(
        proof, client_proof(secret, server_nonce, client_nonce)
    ):
        raise HandshakeError(AUTH_FAILED, kind="auth")


def make_result(secret: bytes | None, server_nonce: bytes, client_nonce: bytes) -> dict:
    """Step 4 (listener), success."""
    if secret is None:
        return {"ok": True, "proof": None}
    return {"ok": True, "proof": server_proof(secret, client_nonce, server_nonce)}


def make_auth_error() -> dict:
    """Step 4 (listener), failure."""
    return {"error": AUTH_FAILED}


def check_result(
    msg: dict, secret: bytes | None, server_nonce: bytes, client_nonce: bytes, address: str = "the server"
) -> None:
    """Step 4 (connector).  Raises on a refusal or a bad server proof."""
    if "error" in msg:
        err = str(msg["error"])
        if err == AUTH_FAILED:
            raise HandshakeError(
                f"authentication failed: {address} rejected this side's security token "
                "(does it match the one the server was started with?)",
                kind="auth",
            )
        raise HandshakeError(f"{address} refused the connection: {err}", kind="auth")
    if msg.get("ok") is not True:
        raise HandshakeError("malformed handshake: no result")
    if secret is None:
        return
    proof = msg.get("proof")
    if type(proof) is not bytes or not hmac.compare_digest(
        proof, server_proof(secret, client_nonce, server_nonce)
    ):
        raise HandshakeError(
            f"authentication failed: {address} could not prove it knows the security token",
            kind="auth",
        )
