"""Wire format of one packet: the unit a transport writes and reads.

This module owns the byte layout of shoal packets (pure: no asyncio, no sockets).

A packet carries a batch of messages::

    u32 LE  n_frames
    u64 LE  frame length            (n_frames times)
    frame 0 ... frame n-1           (back to back)

* Frame 0 (the *body*) is a msgpack array of messages.  A message is any
  msgpack-able structure (tuples, dicts, str, bytes, ints, floats, None, ...).
* A :class:`~shoal.protocol.serialize.Pickled` anywhere in a message is encoded as
  msgpack ``ExtType(1, packb([first, n]))``: frame ``first`` is its pickle stream and
  the next ``n - 1`` frames are its out-of-band buffers.  Decoding rebuilds the
  ``Pickled`` from memoryviews into the received frames (no copy).
* Decoding uses ``use_list=False`` (arrays come back as tuples, so tuple keys
  survive), ``strict_map_key=False`` and ``raw=False``.

Frame indices count from the body: :func:`decode_packet` takes the frames that
follow the prelude (``encode_packet(msgs)[1:]`` round-trips).

Readers call :func:`parse_prelude` on whatever bytes they have so far; it checks the
frame count and the total size against the caller's cap *before* anything is
allocated.  Writers either call :func:`encode_packet` (one packet) or feed a
:class:`PacketEncoder` one message at a time, which encodes eagerly (so an
un-encodable message fails at the caller) and splits batches that would exceed
:data:`MAX_FRAMES` frames or :data:`SPLIT_BYTES` bytes into several packets.
"""

from __future__ import annotations

import gc
import reprlib
import struct
import threading
from pickle import PickleBuffer
from typing import Any, Iterable, Sequence

import msgpack

from shoal.protocol.serialize import Pickled

__all__ = [
    "MAX_FRAMES",
    "PICKLED_EXT_CODE",
    "PRELUDE_MAX_BYTES",
    "SPLIT_BYTES",
    "PreludeError",
    "DecodeError",
    "PacketEncoder",
    "encode_packet",
    "decode_packet",
    "parse_prelude",
    "split_packet",
]

MAX_FRAMES = 1 << 16
PICKLED_EXT_CODE = 1
#: A small `Pickled` with no out-of-band buffers travels inside the msgpack body as
#: ExtType(INLINE_PICKLED_EXT_CODE, header bytes) instead of as a frame of its own.
INLINE_PICKLED_EXT_CODE = 2
INLINE_PICKLED_MAX = 4096
#: An int beyond msgpack's 64 bits (e.g. a task priority rank) travels as
#: ExtType(BIG_INT_EXT_CODE, its two's-complement bytes, big-endian).
BIG_INT_EXT_CODE = 3
#: Largest possible prelude (u32 count + MAX_FRAMES u64 lengths).
PRELUDE_MAX_BYTES = 4 + 8 * MAX_FRAMES
#: A :class:`PacketEncoder` starts a new packet once the current one holds this much.
SPLIT_BYTES = 64 * 1024 * 1024

_U32 = struct.Struct("<I")
_PRELUDE_STRUCTS = {n: struct.Struct(f"<I{n}Q") for n in range(1, 9)}
_LENGTH_STRUCTS = {n: struct.Struct(f"<{n}Q") for n in range(1, 9)}

_ExtType = msgpack.ExtType
_gc_isenabled = gc.isenabled
_gc_disable = gc.disable
_gc_enable = gc.enable
_new_tuple = tuple.__new__
# Pickled references are written as a fixed-width msgpack array [uint32, uint32]
# (any msgpack encoding of the two integers is accepted when reading).
_REF = struct.Struct(">BBIBI")
_REF_LEN = _REF.size
_ref_unpack = _REF.unpack
_unpackb = msgpack.unpackb
_describe = reprlib.Repr()
_describe.maxstring = 60
_describe.maxother = 60


class PreludeError(ValueError):
    """A packet prelude is malformed or announces more than the reader accepts."""


class DecodeError(ValueError):
    """A packet body is not a valid shoal message batch."""


# --------------------------------------------------------------------------- helpers


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _read_uint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    if b == 0xCC:
        return data[pos + 1], pos + 2
    if b == 0xCD:
        return int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
    if b == 0xCE:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    raise DecodeError("malformed Pickled reference")


def _parse_ext(data: bytes) -> tuple[int, int]:
    if len(data) == _REF_LEN and data[1] == 0xCE and data[6] == 0xCE and data[0] == 0x92:
        _, _, first, _, n = _REF.unpack(data)
        return first, n
    try:
        if data[0] != 0x92:
            raise DecodeError("malformed Pickled reference")
        first, pos = _read_uint(data, 1)
        n, pos = _read_uint(data, pos)
    except IndexError:
        raise DecodeError("malformed Pickled reference") from None
    if pos != len(data):
        raise DecodeError("malformed Pickled reference")
    return first, n


def _as_frame(buf: Any) -> bytes | bytearray | memoryview:
    """A flat byte-oriented view of ``buf`` whose ``len`` is its size in bytes."""
    t = type(buf)
    if t is bytes:
        return buf
    if t is bytearray:
        return memoryview(buf)  # pins its size until the frame is written
    if t is PickleBuffer:
        try:
            return buf.raw()
        except BufferError:
            return memoryview(buf).tobytes()
    mv = buf if t is memoryview else memoryview(buf)
    if mv.ndim == 1 and mv.itemsize == 1 and mv.contiguous:
        return mv if mv.format == "B" else mv.cast("B")
    if mv.contiguous:
        try:
            return PickleBuffer(mv).raw()
        except BufferError:
            pass
    return mv.tobytes()


def _prelude(lengths: Sequence[int]) -> bytes:
    n = len(lengths)
    s = _PRELUDE_STRUCTS.get(n)
    if s is not None:
        return s.pack(n, *lengths)
    return struct.pack(f"<I{n}Q", n, *lengths)


def _not_encodable(o: object) -> TypeError:
    return TypeError(f"cannot encode object of type {type(o).__qualname__} in a message: {_describe.repr(o)}")


# --------------------------------------------------------------------------- encoding


class PacketEncoder:
    """Incremental packet builder: ``add`` messages, then ``take`` the wire parts.

    Each message is msgpack-encoded when added, so a message that cannot be encoded
    raises (``TypeError``) right away and leaves the pending batch untouched.
    ``take`` returns the parts of one or more packets (``[prelude, body, *frames]``
    each, concatenated); a batch is split when the next message would push a packet
    past :data:`MAX_FRAMES` frames, or after the message that makes it reach
    ``split_bytes``.  Not thread-safe: one encoder per connection.
    """

    __slots__ = ("_packer", "_chunks", "_frames", "_nbytes", "_done", "split_bytes")

    def __init__(self, split_bytes: int = SPLIT_BYTES) -> None:
        frames: list = []  # buffer frames of the packet being built (frame 1 onwards)

        append = frames.append
        ref = _REF.pack

        def default(o: Any) -> Any:
            if type(o) is Pickled or isinstance(o, Pickled):
                buffers = o.buffers
                if not buffers:
                    header = o.header
                    if len(header) <= INLINE_PICKLED_MAX:
                        data = header if type(header) is bytes else bytes(header)
                        return _new_tuple(_ExtType, (INLINE_PICKLED_EXT_CODE, data))
                first = len(frames) + 1
                append(_as_frame(o.header))
                for b in buffers:
                    append(_as_frame(b))
                # tuple.__new__ skips ExtType's validating __new__ (a hot path).
                return _new_tuple(_ExtType, (PICKLED_EXT_CODE, ref(0x92, 0xCE, first, 0xCE, 1 + len(buffers))))
            if type(o) is int:  # msgpack hands over ints that do not fit 64 bits
                return _new_tuple(_ExtType, (BIG_INT_EXT_CODE, o.to_bytes(o.bit_length() // 8 + 1, "big", signed=True)))
            raise _not_encodable(o)

        # a small start (it grows on demand): 16 KiB up front cost every connection of a flood that much
        self._packer = msgpack.Packer(default=default, use_bin_type=True, buf_size=256)
        self._frames = frames
        self._chunks: list[bytes] = []
        self._nbytes = 0
        self._done: list = []
        self.split_bytes = split_bytes

    def __len__(self) -> int:
        """Number of messages waiting in the packet being built."""
        return len(self._chunks)

    @property
    def empty(self) -> bool:
        return not self._chunks and not self._done

    def _pack(self, msg: Any) -> bytes:
        frames = self._frames
        n0 = len(frames)
        try:
            return self._packer.pack(msg)
        except BaseException as exc:
            del frames[n0:]
            if isinstance(exc, TypeError) and str(exc).startswith("cannot encode"):
                raise
            if isinstance(exc, (TypeError, ValueError, OverflowError)):
                raise type(exc)(f"cannot encode message {_describe.repr(msg)}: {exc}") from exc
            raise

    def add(self, msg: Any) -> None:
        """Encode ``msg`` into the pending batch (raises, leaving the batch intact, if it cannot)."""
        frames = self._frames
        n0 = len(frames)
        try:
            chunk = self._packer.pack(msg)
        except BaseException:
            del frames[n0:]
            self._pack(msg)  # raises again, with a better message
            raise
        nf = len(frames)
        if nf != n0:
            if nf >= MAX_FRAMES:
                # The packet would hold too many frames: close it without this message
                # and encode the message again at the start of a fresh packet.
                del frames[n0:]
                if not self._chunks:
                    raise ValueError(
                        f"message holds more than {MAX_FRAMES - 1} out-of-band buffers: "
                        f"{_describe.repr(msg)}"
                    )
                self._cut()
                chunk = self._pack(msg)
                if len(frames) >= MAX_FRAMES:
                    del frames[:]
                    raise ValueError(
                        f"message holds more than {MAX_FRAMES - 1} out-of-band buffers: "
                        f"{_describe.repr(msg)}"
                    )
                n0 = 0
            nbytes = self._nbytes + len(chunk)
            for f in frames[n0:]:
                nbytes += len(f)
        else:
            nbytes = self._nbytes + len(chunk)
        self._chunks.append(chunk)
        self._nbytes = nbytes
        if nbytes >= self.split_bytes:
            self._cut()

    def add_many(self, msgs: Iterable[Any]) -> None:
        for m in msgs:
            self.add(m)

    def _cut(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        if len(chunks) == 1:
            body = _array_header(1) + chunks[0]
        else:
            body = _array_header(len(chunks)) + b"".join(chunks)
        frames = self._frames
        lengths = [len(body)]
        lengths.extend(map(len, frames))
        done = self._done
        done.append(_prelude(lengths))
        done.append(body)
        done.extend(frames)
        frames.clear()
        self._chunks = []
        self._nbytes = 0

    def take(self) -> list:
        """Wire parts of every pending packet, in order; the encoder is then empty."""
        self._cut()
        done = self._done
        self._done = []
        return done

    def clear(self) -> None:
        """Drop everything pending."""
        self._frames.clear()
        self._chunks = []
        self._nbytes = 0
        self._done = []


class _LocalEncoders(threading.local):
    def __init__(self) -> None:
        self.encoder = PacketEncoder(split_bytes=1 << 62)


_local = _LocalEncoders()


def encode_packet(msgs: Iterable[Any]) -> list:
    """Encode ``msgs`` as ONE packet: ``[prelude, body, *buffer frames]``.

    Large buffers are referenced, not copied.  Raises ``TypeError`` for a message
    that cannot be encoded and ``ValueError`` if the packet would exceed
    :data:`MAX_FRAMES` frames.
    """
    enc: PacketEncoder = _local.encoder
    frames = enc._frames
    frames.clear()
    msgs = msgs if type(msgs) is list or type(msgs) is tuple else list(msgs)
    try:
        body = enc._packer.pack(msgs)
    except BaseException as exc:
        frames.clear()
        if isinstance(exc, (TypeError, ValueError, OverflowError)) and not str(exc).startswith("cannot encode"):
            raise type(exc)(f"cannot encode messages: {exc}") from exc
        raise
    if len(frames) >= MAX_FRAMES:
        frames.clear()
        raise ValueError(f"packet would hold more than {MAX_FRAMES} frames; send fewer buffers per packet")
    lengths = [len(body)]
    lengths.extend(map(len, frames))
    out = [_prelude(lengths), body]
    out.extend(frames)
    frames.clear()
    return out


# --------------------------------------------------------------------------- decoding


def _inline_ext(code: int, data: bytes) -> Any:
    """An extension inside the msgpack body (inline pickle, big int); a reference to a
    frame is only valid where the packet has frames."""
    if code == INLINE_PICKLED_EXT_CODE:
        return Pickled(data)
    if code == BIG_INT_EXT_CODE:
        return int.from_bytes(data, "big", signed=True)
    if code == PICKLED_EXT_CODE:
        raise DecodeError("Pickled reference to a frame that is not in the packet")
    raise DecodeError(f"unknown msgpack extension type {code}")


def decode_packet(frames: Sequence[bytes | bytearray | memoryview]) -> list | tuple:
    """Decode the frames that follow a prelude into the packet's list of messages.

    ``Pickled`` values are rebuilt around memoryviews of ``frames`` (no copy).
    Raises :class:`DecodeError` for anything malformed.
    """
    nf = len(frames)
    if nf == 0:
        raise DecodeError("packet has no body frame")
    if nf == 1:
        hook = _inline_ext
    else:
        views = [f if type(f) is memoryview else memoryview(f) for f in frames]

        def hook(code: int, data: bytes) -> Any:
            if code != PICKLED_EXT_CODE:
                return _inline_ext(code, data)  # the in-body extensions, decoded in one place
            if len(data) == _REF_LEN and data[1] == 0xCE and data[6] == 0xCE and data[0] == 0x92:
                _, _, first, _, n = _ref_unpack(data)
            else:
                first, n = _parse_ext(data)
            end = first + n
            if first < 1 or n < 1 or end > nf:
                raise DecodeError(f"Pickled reference to frames [{first}, {end}) outside the packet's {nf} frames")
            return Pickled(views[first], views[first + 1 : end])

    # The cyclic GC is paused while a batch is built: collections that run in the
    # middle of it see half-built containers, keep them tracked, and make decoding
    # (and every later full collection) several times slower.
    gc_was_enabled = _gc_isenabled()
    if gc_was_enabled:
        _gc_disable()
    try:
        msgs = _unpackb(frames[0], use_list=False, strict_map_key=False, raw=False, ext_hook=hook)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed packet body: {exc!r}") from exc
    finally:
        if gc_was_enabled:
            _gc_enable()
    if type(msgs) is not tuple:
        raise DecodeError(f"packet body is a {type(msgs).__name__}, not an array of messages")
    return msgs


def parse_prelude(buf: bytes | bytearray | memoryview, max_packet_bytes: int) -> tuple[int, list[int]] | None:
    """Parse the prelude at the start of ``buf``.

    Returns ``(prelude_length, frame_lengths)`` once ``buf`` holds the whole prelude,
    ``None`` if more bytes are needed.  Raises :class:`PreludeError` as soon as the
    frame count is known to exceed :data:`MAX_FRAMES` (or is zero), and once the
    lengths are known if their sum exceeds ``max_packet_bytes``; in both cases before
    the caller allocates anything.
    """
    nb = len(buf)
    if nb < 4:
        return None
    (n,) = _U32.unpack_from(buf, 0)
    if n > MAX_FRAMES:
        raise PreludeError(f"packet announces {n} frames, more than the limit of {MAX_FRAMES}")
    if n == 0:
        raise PreludeError("packet announces zero frames")
    plen = 4 + 8 * n
    if plen - 4 > max_packet_bytes:
        raise PreludeError(f"packet announces {n} frames, too many for the limit of {max_packet_bytes} bytes")
    if nb < plen:
        return None
    s = _LENGTH_STRUCTS.get(n)
    lengths = s.unpack_from(buf, 4) if s is not None else struct.unpack_from(f"<{n}Q", buf, 4)
    total = sum(lengths)
    if total > max_packet_bytes:
        raise PreludeError(f"packet of {total} bytes exceeds the limit of {max_packet_bytes} bytes")
    return plen, list(lengths)


def split_packet(data: bytes | bytearray | memoryview, max_packet_bytes: int | None = None) -> list[memoryview]:
    """Split one complete packet (prelude included) into memoryviews of its frames."""
    mv = memoryview(data).cast("B") if type(data) is not memoryview or data.format != "B" else data
    cap = len(mv) if max_packet_bytes is None else max_packet_bytes
    parsed = parse_prelude(mv, cap)
    if parsed is None:
        raise PreludeError("truncated prelude")
    pos, lengths = parsed
    if pos + sum(lengths) != len(mv):
        raise PreludeError(f"packet is {len(mv)} bytes but its prelude announces {pos + sum(lengths)}")
    out = []
    for n in lengths:
        out.append(mv[pos : pos + n])
        pos += n
    return out
