"""Unit tests for shoal.protocol.handshake: message builders and checkers."""

from __future__ import annotations

import pytest

from shoal.protocol import handshake as hs
from shoal.protocol.framing import encode_packet, split_packet
from shoal.protocol.serialize import dumps


def wire(msg: dict) -> dict:
    """Send a handshake message through the real packet encoding and back."""
    return hs.decode_handshake(split_packet(b"".join(hs.encode_handshake(msg))))


def run_handshake(client_secret, server_secret, client_info=None, server_info=None):
    hello, cn = hs.make_hello(client_info)
    got_cn, got_client_info = hs.check_hello(wire(hello))
    assert got_cn == cn
    welcome, sn = hs.make_welcome(server_info, server_secret is not None)
    sn2, got_server_info, auth = hs.check_welcome(wire(welcome), client_secret, "tcp://srv:1")
    assert sn2 == sn and auth == (server_secret is not None)
    proof = wire(hs.make_proof(client_secret, sn, cn))
    hs.check_proof(proof, server_secret, sn, cn)
    hs.check_result(wire(hs.make_result(server_secret, sn, cn)), client_secret, sn, cn, "tcp://srv:1")
    return got_client_info, got_server_info


def test_successful_handshake_with_secret_exchanges_info():
    ci, si = run_handshake(b"token", b"token", {"name": "c", "versions": {"python": "3.11"}}, {"name": "s"})
    assert ci == {"name": "c", "versions": {"python": "3.11"}}
    assert si == {"name": "s"}


def test_successful_handshake_without_secret():
    ci, si = run_handshake(None, None)
    assert ci == {} and si == {}


def test_proofs_verify_and_are_direction_specific():
    cn, sn = hs.new_nonce(), hs.new_nonce()
    assert len(cn) == hs.NONCE_BYTES
    p = hs.client_proof(b"s", sn, cn)
    assert p == hs.client_proof(b"s", sn, cn)
    assert p != hs.server_proof(b"s", cn, sn)  # a reflected proof does not verify
    assert p != hs.client_proof(b"t", sn, cn)


def test_wrong_secret_fails():
    with pytest.raises(hs.HandshakeError) as info:
        run_handshake(b"wrong", b"right")
    assert info.value.kind == "auth"
    assert str(info.value) == "authentication failed"


def test_bad_server_proof_is_detected():
    hello, cn = hs.make_hello(None)
    welcome, sn = hs.make_welcome(None, True)
    forged = hs.make_result(b"other", sn, cn)
    with pytest.raises(hs.HandshakeError, match="could not prove") as info:
        hs.check_result(forged, b"secret", sn, cn)
    assert info.value.kind == "auth"
    with pytest.raises(hs.HandshakeError):
        hs.check_result({"ok": True, "proof": None}, b"secret", sn, cn)


def test_auth_error_result_is_reported():
    with pytest.raises(hs.HandshakeError, match="security token") as info:
        hs.check_result(wire(hs.make_auth_error()), b"x", b"0" * 32, b"1" * 32, "tcp://h:1")
    assert info.value.kind == "auth"


def test_client_without_secret_to_secured_server():
    welcome, _ = hs.make_welcome({}, True)
    with pytest.raises(hs.HandshakeError, match="requires authentication: pass the cluster's security token"):
        hs.check_welcome(wire(welcome), None, "tcp://1.2.3.4:8786")


def test_client_with_secret_to_open_server():
    welcome, _ = hs.make_welcome({}, False)
    with pytest.raises(hs.HandshakeError, match="not authenticated") as info:
        hs.check_welcome(wire(welcome), b"secret", "tcp://1.2.3.4:8786")
    assert info.value.kind == "auth"


def test_version_mismatch():
    hello = {"shoal": 2, "nonce": hs.new_nonce(), "info": {}}
    with pytest.raises(hs.HandshakeError) as info:
        hs.check_hello(wire(hello))
    assert info.value.kind == "version"
    err = hs.make_version_error(2)
    assert err == {"error": "protocol version mismatch: peer speaks 2, this server speaks 1"}
    with pytest.raises(hs.HandshakeError, match="protocol version mismatch") as info:
        hs.check_welcome(wire(err), None)
    assert info.value.kind == "version"
    welcome = {"shoal": 7, "nonce": hs.new_nonce(), "info": {}, "auth": False}
    with pytest.raises(hs.HandshakeError, match="speaks 7") as info:
        hs.check_welcome(welcome, None)
    assert info.value.kind == "version"


@pytest.mark.parametrize(
    "msg",
    [
        {"nonce": b"x" * 32},  # not shoal
        {"shoal": 1, "nonce": b"short"},
        {"shoal": 1, "nonce": "x" * 32},
        {"shoal": 1, "nonce": b"x" * 32, "info": [1, 2]},
    ],
)
def test_malformed_hello(msg):
    with pytest.raises(hs.HandshakeError) as info:
        hs.check_hello(msg)
    assert info.value.kind == "protocol"


def test_decode_handshake_rejects_pickled_and_oddities():
    big = dumps(bytearray(100_000))  # out of band: a frame of its own
    frames = split_packet(b"".join(encode_packet([{"x": big}])))
    with pytest.raises(hs.HandshakeError, match="frames"):
        hs.decode_handshake(frames)
    with pytest.raises(hs.HandshakeError, match="serialized"):
        hs.decode_handshake(frames[:1])
    small = split_packet(b"".join(encode_packet([{"x": dumps(1)}])))  # inline in the body
    assert len(small) == 1
    with pytest.raises(hs.HandshakeError, match="serialized"):
        hs.decode_handshake(small)
    with pytest.raises(hs.HandshakeError):
        hs.decode_handshake(split_packet(b"".join(encode_packet([{"a": 1}, {"b": 2}]))))
    with pytest.raises(hs.HandshakeError):
        hs.decode_handshake(split_packet(b"".join(encode_packet(["not a dict"]))))
    with pytest.raises(hs.HandshakeError):
        hs.decode_handshake([b"\xc1garbage"])
    with pytest.raises(hs.HandshakeError, match="too large"):
        hs.decode_handshake([b"\x00" * (hs.MAX_HANDSHAKE_BYTES + 1)])


def test_as_secret():
    assert hs.as_secret(None) is None
    assert hs.as_secret("0a0b") == b"\x0a\x0b"  # text is hexadecimal: the one encoding
    assert hs.as_secret(b"tok") == b"tok"
    assert hs.as_secret(b"") is None
    with pytest.raises(ValueError, match="hexadecimal"):
        hs.as_secret("tok")
    with pytest.raises(TypeError):
        hs.as_secret(1.5)
