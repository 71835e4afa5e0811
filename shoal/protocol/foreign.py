"""Recognizing a peer that speaks Dask distributed's protocol, and telling it so.

shoal and distributed do not interoperate (different framing, handshake and messages).
Without this, a `distributed.Client` or `dask worker` pointed at a shoal scheduler waits
for its connect timeout and fails with a bare "Stream is closed", and a shoal client
reaching a distributed server says only that the bytes made no sense. Pure: byte
layouts only; `shoal.comm.tcp` looks at the first bytes of each connection with
`sniff` and answers a distributed connector with `distributed_refusal`.

distributed's TCP messages start with a little-endian u64 (the size of what follows),
then a u64 frame count, one u64 length per frame and the frames; the first message each
side sends is a msgpack map with `compression`, `python` and `pickle-protocol`. A shoal
packet starts with a u32 frame count and a u64 length, which read as one u64 is always
at least 2**32: the two never look alike.
"""

from __future__ import annotations

import struct

import msgpack

DISTRIBUTED = "distributed"
MORE = "more"  # too few bytes yet to tell
#: a distributed handshake is a few hundred bytes; anything announcing more is not one
_MAX_HELLO = 64 * 1024
_HELLO_KEYS = ("compression", "pickle-protocol", "python")
_Q = struct.Struct("<Q")


def may_be_foreign(first_u32: int) -> bool:
    """Whether a connection's first 4 bytes (as a u32) may start distributed's handshake
    (a shoal peer's first packet starts with 1; other garbage is refused as usual)."""
    return 16 <= first_u32 <= _MAX_HELLO


def sniff(data: bytes | bytearray | memoryview) -> str | None:
    """`DISTRIBUTED` when `data` (the first bytes a peer sent) is distributed's
    handshake, `MORE` when more bytes are needed to tell, None when it is not."""
    if len(data) < 8:
        return MORE
    (size,) = _Q.unpack_from(data, 0)
    if not 16 <= size <= _MAX_HELLO:
        return None
    if len(data) < 8 + size:
        return MORE
    (n,) = _Q.unpack_from(data, 8)
    if not 1 <= n <= 8 or 16 + 8 * n > 8 + size:
        return None
    lengths = struct.unpack_from(f"<{n}Q", data, 16)
    start = 16 + 8 * n
    if start + lengths[0] > 8 + size:
        return None
    try:
        msg = msgpack.unpackb(bytes(data[start : start + lengths[0]]), raw=False, strict_map_key=False)
    except Exception:
        return None
    if isinstance(msg, dict) and any(k in msg for k in _HELLO_KEYS):
        return DISTRIBUTED
    return None


def distributed_refusal(text: str) -> bytes:
    """One distributed-framed message that makes a distributed peer's read raise
    `TypeError(text)` (its serialization family "error", meant for this): what a
    distributed client or worker shows its user instead of a timeout. Nothing in it
    needs unpickling."""
    frames = [
        msgpack.packb({"__Serialized__": 1}),
        msgpack.packb({"serializer": "error", "num-sub-frames": 1}),
        text.encode(),
    ]
    prelude = struct.pack(f"<Q{len(frames)}Q", len(frames), *(len(f) for f in frames))
    body = prelude + b"".join(frames)
    return _Q.pack(len(body)) + body


def refusal_text(address: str, role: str = "scheduler") -> str:
    """What a distributed peer is told when it reaches shoal at `address`."""
    return (
        f"{address} is a shoal {role}, not a Dask distributed one: shoal and distributed do not "
        "interoperate. Connect with shoal.Client (from shoal import Client) and start workers with "
        "`shoal worker`, or point this distributed client/worker at a distributed scheduler."
    )


def reached_distributed_text() -> str:
    """What a shoal connector says when the server it reached speaks distributed's protocol."""
    return (
        "it is a Dask distributed server (it answered with distributed's handshake): shoal and "
        "distributed do not interoperate. Connect to it with distributed.Client, or start a shoal "
        "scheduler (`shoal scheduler`) and connect to that."
    )
