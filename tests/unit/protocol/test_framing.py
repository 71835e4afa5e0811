"""Unit tests for shoal.protocol.framing: packet encoding, decoding and prelude checks."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from shoal.protocol import framing
from shoal.protocol.framing import (
    MAX_FRAMES,
    DecodeError,
    PacketEncoder,
    PreludeError,
    decode_packet,
    encode_packet,
    parse_prelude,
    split_packet,
)
from shoal.protocol.serialize import Pickled, dumps, loads


def tuplify(x):
    """What a message looks like after a round trip (msgpack arrays come back as tuples)."""
    if isinstance(x, (list, tuple)):
        return tuple(tuplify(i) for i in x)
    if isinstance(x, dict):
        return {tuplify(k): tuplify(v) for k, v in x.items()}
    return x


def round_trip(msgs):
    parts = encode_packet(msgs)
    data = b"".join(parts)
    frames = split_packet(data)
    return decode_packet(frames), data


MESSAGES = [
    [],
    [None],
    [("compute", "x-1", 1, 2.5, None, True, False)],
    [("key", ("tuple", "key", 3))],
    [{("a", 1): "tuple key", 5: "int key", 1.5: "float key", "s": "str key"}],
    [{"nested": {"deep": [1, [2, [3, (4, 5)]]]}}],
    ["unicode ✓ 日本語 \u0000 end", b"\x00\xffbinary", bytearray(b"ba"), memoryview(b"mv")],
    [2**63, -(2**63), 0, -1, 127, 128, 1e300, float("inf")],
    [2**64, -(2**63) - 1, 2**200, -(2**200), ((-5 << 96) | 7, "beyond 64 bits")],
    [("op", i, {"x": i}) for i in range(1000)],
    [("op", "x" * 100_000)],
]


@pytest.mark.parametrize("msgs", MESSAGES, ids=range(len(MESSAGES)))
def test_round_trip(msgs):
    out, _ = round_trip(msgs)
    assert isinstance(out, tuple)
    expected = tuplify([bytes(m) if isinstance(m, (bytearray, memoryview)) else m for m in msgs])
    assert out == expected


def test_decode_accepts_parts_without_prelude():
    parts = encode_packet([("a", 1)])
    assert decode_packet(parts[1:]) == (("a", 1),)


def test_pickled_numpy_out_of_band_is_zero_copy():
    big = np.arange(200_000, dtype=np.float64)
    small = np.arange(4, dtype=np.int8)
    p_big, p_small = dumps(big), dumps(small)
    assert len(p_big.buffers) == 1 and not p_small.buffers
    msgs = [("task", ("key", 0), p_big, {"small": p_small}), ("other", p_big)]
    parts = encode_packet(msgs)
    # prelude, body, (header + buffer) twice; the small one travels inside the body
    assert len(parts) == 2 + 2 + 2
    # Encoding references the array's memory; it does not copy it.
    assert any(isinstance(x, memoryview) and np.shares_memory(np.asarray(x), big) for x in parts)
    data = bytearray(b"".join(parts))
    out = decode_packet(split_packet(data))
    (op, key, p1, extra), (_, p2) = out
    assert (op, key) == ("task", ("key", 0))
    assert isinstance(p1, Pickled) and isinstance(extra["small"], Pickled)
    assert isinstance(p1.header, memoryview) and all(isinstance(b, memoryview) for b in p1.buffers)
    arr = loads(p1)
    np.testing.assert_array_equal(arr, big)
    np.testing.assert_array_equal(loads(extra["small"]), small)
    np.testing.assert_array_equal(loads(p2), big)
    # Zero copy: the decoded array lives inside the received packet buffer.
    assert np.shares_memory(arr, np.frombuffer(data, dtype=np.uint8))
    assert p1.buffers[0].obj is data
    assert arr.flags.writeable


def test_pickled_with_unusual_buffers_is_normalised():
    floats = np.arange(1000, dtype=np.float64)
    strided = memoryview(bytes(range(10)))[::2]
    p = Pickled(
        b"header",
        [memoryview(floats), memoryview(floats.reshape(10, 100)), bytearray(b"xyz"), b"b", strided, floats[::3]],
    )
    out, _ = round_trip([p])
    (q,) = out
    assert bytes(q.header) == b"header"
    assert [bytes(b) for b in q.buffers] == [
        floats.tobytes(),
        floats.tobytes(),
        b"xyz",
        b"b",
        bytes(range(0, 10, 2)),
        floats[::3].tobytes(),
    ]


def test_unencodable_message_raises_type_error_naming_type():
    with pytest.raises(TypeError, match="set"):
        encode_packet([("x", {1, 2})])
    enc = PacketEncoder()
    enc.add(("ok", dumps(np.arange(10_000))))
    with pytest.raises(TypeError, match="object"):
        enc.add(("bad", dumps(np.arange(10_000)), object()))
    enc.add(("ok2",))
    out = decode_packet(split_packet(b"".join(enc.take())))
    assert [m[0] for m in out] == ["ok", "ok2"]
    np.testing.assert_array_equal(loads(out[0][1]), np.arange(10_000))
    assert enc.take() == []


def test_encoder_splits_on_frame_count(monkeypatch):
    monkeypatch.setattr(framing, "MAX_FRAMES", 8)
    enc = PacketEncoder()
    payload = dumps(np.arange(1000))  # header + one buffer = 2 frames
    for i in range(10):
        enc.add(("m", i, payload))
    parts = enc.take()
    data = b"".join(parts)
    # Walk the concatenated packets.
    seen = []
    view = memoryview(data)
    while view:
        plen, lengths = parse_prelude(view, 1 << 30)
        total = plen + sum(lengths)
        assert len(lengths) < 8
        msgs = decode_packet(split_packet(view[:total]))
        seen.extend(m[1] for m in msgs)
        for m in msgs:
            np.testing.assert_array_equal(loads(m[2]), np.arange(1000))
        view = view[total:]
    assert seen == list(range(10))


def test_encoder_splits_on_bytes():
    enc = PacketEncoder(split_bytes=10_000)
    for i in range(5):
        enc.add(("m", i, b"x" * 6000))
    data = memoryview(b"".join(enc.take()))
    packets = 0
    seen = []
    while data:
        plen, lengths = parse_prelude(data, 1 << 30)
        total = plen + sum(lengths)
        seen.extend(m[1] for m in decode_packet(split_packet(data[:total])))
        data = data[total:]
        packets += 1
    assert seen == list(range(5)) and packets >= 3


def test_too_many_buffers_in_one_message(monkeypatch):
    monkeypatch.setattr(framing, "MAX_FRAMES", 4)
    with pytest.raises(ValueError, match="frames"):
        encode_packet([Pickled(b"h", [b"a", b"b", b"c", b"d"])])
    enc = PacketEncoder()
    with pytest.raises(ValueError, match="out-of-band buffers"):
        enc.add(Pickled(b"h", [b"a", b"b", b"c", b"d"]))
    assert enc.take() == []


# ------------------------------------------------------------------ prelude


def test_parse_prelude_incremental():
    parts = encode_packet([("x", dumps(np.arange(10_000)))])
    prelude = parts[0]
    lengths = [len(p) for p in parts[1:]]
    for i in range(len(prelude)):
        assert parse_prelude(memoryview(prelude[:i]), 1 << 30) is None
    assert parse_prelude(memoryview(prelude), 1 << 30) == (len(prelude), lengths)
    # Extra bytes after the prelude are fine.
    assert parse_prelude(prelude + b"more", 1 << 30) == (len(prelude), lengths)


def test_parse_prelude_rejects_too_many_frames_from_four_bytes():
    # Only the count has arrived: rejected before the lengths (or anything) are allocated.
    with pytest.raises(PreludeError, match="frames"):
        parse_prelude(struct.pack("<I", MAX_FRAMES + 1), 1 << 40)
    with pytest.raises(PreludeError):
        parse_prelude(b"GET / HTTP/1.1\r\n", 1 << 40)
    with pytest.raises(PreludeError):
        parse_prelude(struct.pack("<I", 0), 1 << 40)


def test_parse_prelude_rejects_oversized_packet():
    with pytest.raises(PreludeError, match="exceeds"):
        parse_prelude(struct.pack("<IQ", 1, 1 << 40), 8 << 30)
    with pytest.raises(PreludeError, match="exceeds"):
        parse_prelude(struct.pack("<IQQ", 2, 600, 600), 1000)
    # A count that cannot fit the cap is rejected before the lengths arrive.
    with pytest.raises(PreludeError):
        parse_prelude(struct.pack("<I", 1000), 1024)
    assert parse_prelude(struct.pack("<IQQ", 2, 500, 500), 1000) == (20, [500, 500])


# ------------------------------------------------------------------ malformed input


def test_decode_rejects_garbage():
    with pytest.raises(DecodeError):
        decode_packet([b"\xc1"])
    with pytest.raises(DecodeError):
        decode_packet([msgpack.packb({"not": "an array"})])
    with pytest.raises(DecodeError):
        decode_packet([msgpack.packb([1]) + b"trailing"])
    with pytest.raises(DecodeError):
        decode_packet([])


@pytest.mark.parametrize(
    "ext_data,n_frames",
    [
        (msgpack.packb([1, 5]), 2),  # runs past the last frame
        (msgpack.packb([0, 1]), 2),  # points at the body itself
        (msgpack.packb([1, 0]), 2),  # zero frames
        (msgpack.packb([1]), 2),  # malformed reference
        (b"", 2),
        (msgpack.packb([1, 1]), 1),  # no frames at all
    ],
)
def test_decode_rejects_bad_pickled_references(ext_data, n_frames):
    body = msgpack.packb([msgpack.ExtType(1, ext_data)])
    with pytest.raises(DecodeError):
        decode_packet([body] + [b"x"] * (n_frames - 1))


def test_decode_rejects_unknown_extension():
    body = msgpack.packb([msgpack.ExtType(42, b"")])
    with pytest.raises(DecodeError, match="42"):
        decode_packet([body, b"x"])


def test_split_packet_checks_length():
    data = b"".join(encode_packet([1, 2, 3]))
    assert decode_packet(split_packet(data)) == (1, 2, 3)
    with pytest.raises(PreludeError):
        split_packet(data + b"x")
    with pytest.raises(PreludeError):
        split_packet(data[:-1])
