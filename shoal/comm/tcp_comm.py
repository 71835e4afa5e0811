"""The TCP comm: an asyncio ``BufferedProtocol`` speaking shoal packets.

This module owns one connection's reading and writing; connecting, listening and the
handshake are `tcp.py`'s.

Reading (no stream objects, few copies):

* Small data is received into a reusable buffer.  A packet whose body is its only
  frame is decoded straight out of that buffer; small frames are copied out once
  (a packet's small frames share one ``bytes``).
* A frame of :data:`DIRECT_MIN` bytes or more gets its own buffer, allocated once
  at its exact size when the prelude announces it (anonymous private memory with
  transparent huge pages for big ones, which is several times faster to fault in
  than a ``bytearray``), and ``get_buffer`` hands out the rest of that buffer so the
  kernel writes straight into it.  Decoded ``Pickled`` values are memoryviews into
  those buffers, so a received numpy array is never copied by shoal.
* Frame count and total size are checked against the cap (64 KiB during the
  handshake, ``max_packet_bytes`` after it) before anything is allocated.

Writing: ``send`` encodes the message at once (so a bad message fails at the
caller) and schedules one flush per loop tick.  The flush writes small parts joined
in one ``transport.write`` and feeds large buffers to the transport in chunks,
only while the transport is not paused, so the transport never holds a copy of a
whole large array; ``close`` waits for all of it to drain.

Every OS error is mapped to :class:`~shoal.comm.errors.CommClosedError` (or the
connect/handshake errors) here.
"""

from __future__ import annotations

import asyncio
import mmap
import socket
import struct
from collections import deque
from typing import Any, Iterable

from shoal import config
from shoal.comm.addressing import unparse_host_port
from shoal.comm.core import Comm, log_limited
from shoal.protocol import foreign
from shoal.protocol import handshake as hs
from shoal.protocol.framing import (
    PacketEncoder,
    PreludeError,
    decode_packet,
    parse_prelude,
)

__all__ = ["TCP", "ForeignProtocolError", "set_tcp_timeout"]


class ForeignProtocolError(Exception):
    """The peer speaks another protocol (Dask distributed's)."""


#: Frames at least this large are received directly into their own buffer.
DIRECT_MIN = 64 * 1024
#: Frames at least this large are allocated with mmap (+ MADV_HUGEPAGE).
MMAP_MIN = 1024 * 1024
#: Size of the reusable receive buffer.
SMALL_BUFFER = 256 * 1024
#: read buffer of a connection that has not completed its handshake (grown as needed)
HANDSHAKE_BUFFER = 4 * 1024
#: Parts up to this size are joined into one write.
JOIN_MAX = 64 * 1024
#: Large buffers are handed to the transport this many bytes at a time.
WRITE_CHUNK = 4 * 1024 * 1024
#: Transport write-buffer limits (pause_writing above HIGH, resume below LOW).
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
#: Pause reading when this many packets / bytes wait unread in the inbox. Packets are
#: decoded as they arrive, and the event loop may read many before the reader runs: a
#: client sending a big graph in 6 MB batches would otherwise have every batch decoded
#: at once (5x its wire size) instead of one after another.
INBOX_MAX_PACKETS = 1024
INBOX_MAX_BYTES = 4 * 1024 * 1024

_U32 = struct.Struct("<I")
_MAP_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


def _allocate(n: int) -> memoryview:
    """A writable byte buffer of exactly ``n`` bytes (contents undefined)."""
    if n >= MMAP_MIN and _MAP_FLAGS:
        try:
            m = mmap.mmap(-1, n, flags=_MAP_FLAGS)
        except (OSError, ValueError):
            pass
        else:
            if _MADV_HUGEPAGE is not None:
                try:
                    m.madvise(_MADV_HUGEPAGE)
                except OSError:
                    pass
            return memoryview(m)
    return memoryview(bytearray(n))


def _format_sockaddr(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return "tcp://" + unparse_host_port(str(sockaddr[0]), int(sockaddr[1]))
    return f"tcp://{sockaddr}"


def set_tcp_timeout(sock: socket.socket, seconds: float) -> None:
    """Make the kernel give up on a connection whose peer stopped answering for about
    `seconds` (a cut link, a vanished host): keepalive probes for an idle connection, and
    on Linux ``TCP_USER_TIMEOUT`` for unacknowledged data. The connection then fails like
    any closed one. Without this a link cut with no reset keeps a connection "open" for
    many minutes. Options the platform lacks are skipped; 0 leaves the OS defaults."""
    if seconds <= 0:
        return
    idle = max(1, int(seconds / 3))
    interval = max(1, int(seconds / 6))
    options = [
        (socket.SOL_SOCKET, getattr(socket, "SO_KEEPALIVE", None), 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), interval),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), 3),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(seconds * 1000)),
    ]
    for level, option, value in options:
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass


class TCP(Comm, asyncio.BufferedProtocol):
    """A shoal comm over one TCP connection (also its asyncio protocol)."""

    __slots__ = (
        "_transport",
        "_encoder",
        "_out",
        "_paused",
        "_drain_waiter",
        "_lost",
        "_buf",
        "_view",
        "_start",
        "_end",
        "_max_packet",
        "_cap",
        "_raw_left",
        "_lengths",
        "_fi",
        "_frames",
        "_pkt_bytes",
        "_target",
        "_tpos",
        "_inbox_bytes",
        "_inbox_total",
        "_reading_paused",
        "protocol_error",
        "on_connect",
        "answer_foreign",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_packet_bytes: int, handshake: bool = True) -> None:
        Comm.__init__(self, loop)
        self._transport: asyncio.Transport | None = None
        self._encoder = PacketEncoder()
        self._out: deque = deque()
        self._paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._lost: asyncio.Future = loop.create_future()
        # until the handshake is done a small buffer: a flood of connections that never
        # authenticate costs a few KB each, not SMALL_BUFFER
        self._buf = bytearray(HANDSHAKE_BUFFER if handshake else SMALL_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._max_packet = max_packet_bytes
        self._raw_left = hs.HANDSHAKE_PACKETS if handshake else 0
        self._cap = hs.MAX_HANDSHAKE_BYTES if handshake else max_packet_bytes
        self._lengths: list[int] | None = None
        self._fi = 0
        self._frames: list | None = None
        self._pkt_bytes = 0
        self._target: memoryview | None = None
        self._tpos = 0
        self._inbox_bytes: deque[int] = deque()
        self._inbox_total = 0
        self._reading_paused = False
        self.protocol_error: BaseException | None = None
        self.on_connect: Any = None
        #: a listener's comm tells a distributed connector what it reached (`protocol/foreign.py`):
        #: the listener's role ("scheduler", "worker", ...), None on a connector
        self.answer_foreign: str | None = None

    # ================================================================== asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            set_tcp_timeout(sock, config.get_timedelta("comm.timeouts.tcp"))
        self.local_address = _format_sockaddr(transport.get_extra_info("sockname"))
        self.peer_address = _format_sockaddr(transport.get_extra_info("peername"))
        try:
            transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError):
            pass
        if self.on_connect is not None:
            cb, self.on_connect = self.on_connect, None
            cb(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self._target
        if target is not None:
            return target[self._tpos :]
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
            return self._view
        free = len(self._buf) - end
        if free < DIRECT_MIN:
            # Move the partial unit at the end of the buffer to its start.
            n = end - start
            if start >= n:
                self._view[:n] = self._view[start:end]
            else:
                self._view[:n] = bytes(self._view[start:end])
            self._start, self._end = 0, n
            end = n
        return self._view[end:]

    def buffer_updated(self, nbytes: int) -> None:
        target = self._target
        if target is not None:
            self._tpos += nbytes
            if self._tpos < len(target):
                return
            self._target = None
            self._frames.append(target)  # type: ignore[union-attr]
            self._fi += 1
        else:
            self._end += nbytes
        try:
            self._process()
        except Exception as exc:  # PreludeError, DecodeError, MemoryError, ...
            self._fail(exc)

    def eof_received(self) -> bool:
        if self._lengths is not None or self._end > self._start:
            self._fail(PreludeError("connection closed in the middle of a packet"), log=False)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            reason = "connection closed by peer" if not self._closed else "connection closed"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        if self.protocol_error is not None:
            reason = f"protocol error: {self.protocol_error}"
            exc = self.protocol_error  # type: ignore[assignment]
        self._out.clear()
        self._encoder.clear()
        self._target = None
        # free the read buffer now, not when a garbage collection finds this comm
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._set_closed(reason, exc)
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._out:
            self._pump()
        else:
            self._wake_drain()

    # ================================================================== reading

    def _fail(self, exc: BaseException, log: bool = True) -> None:
        """The peer broke the protocol: drop the connection."""
        if self.protocol_error is None:
            self.protocol_error = exc
            if log and self._raw_left == 0:
                # (handshake failures are logged by whoever runs the handshake)
                log_limited.warning("packet", "Closing connection %s -> %s: %s", self.local_address, self.peer_address, exc)
        self._lengths = None
        self._target = None
        self._start = self._end = 0
        if self._transport is not None:
            self._transport.abort()

    def _refuse_distributed(self) -> None:
        """The peer speaks Dask distributed's protocol: say so on this side (the handshake
        fails with this text) and, as a listener, tell the distributed peer too."""
        if self.answer_foreign is not None:
            text = "it speaks Dask distributed's protocol (a distributed Client or `dask worker`?); told it that "
            text += "shoal and distributed do not interoperate"
            self.protocol_error = ForeignProtocolError(text)
            self._start = self._end = 0
            if self._transport is not None:
                self._transport.write(foreign.distributed_refusal(foreign.refusal_text(self.local_address, self.answer_foreign)))
                self._transport.close()  # after the refusal is written
            return
        self._fail(ForeignProtocolError(foreign.reached_distributed_text()), log=False)

    def _grow(self, needed: int) -> None:
        size = max(2 * len(self._buf), needed + DIRECT_MIN)
        new = bytearray(size)
        n = self._end - self._start
        new[:n] = self._view[self._start : self._end]
        self._buf = new
        self._view = memoryview(new)
        self._start, self._end = 0, n

    def _process(self) -> None:
        while True:
            lengths = self._lengths
            view = self._view
            if lengths is None:
                start = self._start
                end = self._end
                if end - start < 4:
                    return
                if self._raw_left == hs.HANDSHAKE_PACKETS and foreign.may_be_foreign(_U32.unpack_from(view, start)[0]):
                    # not how a shoal peer's first packet starts (one frame): who is this?
                    with view[start:end] as pv:
                        kind = foreign.sniff(pv)
                    if kind == foreign.MORE:
                        return
                    if kind == foreign.DISTRIBUTED:
                        self._refuse_distributed()
                        return
                with view[start:end] as pv:
                    parsed = parse_prelude(pv, self._cap)
                if parsed is None:
                    (n,) = _U32.unpack_from(view, start)
                    plen = 4 + 8 * n
                    if plen + DIRECT_MIN > len(self._buf):
                        self._grow(plen)
                    return
                plen, lengths = parsed
                start += plen
                self._start = start
                if len(lengths) == 1 and not self._raw_left:
                    size = lengths[0]
                    if end - start >= size:
                        # Fast path: a body-only packet already in the buffer.
                        self._start = start + size
                        with view[start : start + size] as body:
                            msgs = decode_packet((body,))
                        self._deliver_packet(msgs, size)
                        continue
                self._lengths = lengths
                self._fi = 0
                self._frames = []
                self._pkt_bytes = sum(lengths)
            # Gather the packet's frames.
            frames = self._frames
            n = len(lengths)
            fi = self._fi
            while fi < n:
                size = lengths[fi]
                start = self._start
                avail = self._end - start
                if size >= DIRECT_MIN:
                    target = _allocate(size)
                    k = avail if avail < size else size
                    if k:
                        target[:k] = view[start : start + k]
                        self._start = start + k
                    if k == size:
                        frames.append(target)  # type: ignore[union-attr]
                        fi += 1
                        continue
                    self._fi = fi
                    self._target = target
                    self._tpos = k
                    return
                # A run of small frames: copy them out together once all are here.
                j = fi
                seg = 0
                while j < n and lengths[j] < DIRECT_MIN and seg + lengths[j] <= DIRECT_MIN:
                    seg += lengths[j]
                    j += 1
                if avail < seg:
                    self._fi = fi
                    return
                data = memoryview(bytes(view[start : start + seg]))
                self._start = start + seg
                pos = 0
                for k in range(fi, j):
                    size = lengths[k]
                    frames.append(data[pos : pos + size])  # type: ignore[union-attr]
                    pos += size
                fi = j
            self._lengths = None
            self._frames = None
            if self._raw_left:
                self._raw_left -= 1
                if not self._raw_left:
                    self._cap = self._max_packet
                    if len(self._buf) < SMALL_BUFFER:
                        self._grow(SMALL_BUFFER - DIRECT_MIN)
                self._deliver_packet(frames, self._pkt_bytes)
            else:
                self._deliver_packet(decode_packet(frames), self._pkt_bytes)  # type: ignore[arg-type]

    def _deliver_packet(self, msgs: Any, nbytes: int) -> None:
        self._inbox.append(msgs)
        self._inbox_bytes.append(nbytes)
        self._inbox_total += nbytes
        if self._waiters:
            self._wake_one()
        if not self._reading_paused and (
            len(self._inbox) >= INBOX_MAX_PACKETS or self._inbox_total >= INBOX_MAX_BYTES
        ):
            t = self._transport
            if t is not None and not t.is_closing():
                self._reading_paused = True
                t.pause_reading()

    def _consumed(self) -> None:
        ib = self._inbox_bytes
        if ib:
            self._inbox_total -= ib.popleft()
        if (
            self._reading_paused
            and len(ib) <= INBOX_MAX_PACKETS // 2
            and self._inbox_total <= INBOX_MAX_BYTES // 2
        ):
            self._reading_paused = False
            t = self._transport
            if t is not None and not t.is_closing():
                t.resume_reading()

    # ================================================================== writing

    def send(self, msg: Any) -> None:
        if self._closed:
            raise self._closed_error()
        if self._flush_pending:
            self._encoder.add(msg)
            return
        self._check_loop()
        self._encoder.add(msg)
        self._flush_at_end_of_tick()

    def send_many(self, msgs: Iterable[Any]) -> None:
        if self._closed:
            raise self._closed_error()
        if not self._flush_pending:
            self._check_loop()
        enc = self._encoder
        try:
            for m in msgs:
                enc.add(m)
        finally:  # messages before a bad one still go out this tick
            if not self._flush_pending and not enc.empty:
                self._flush_at_end_of_tick()

    def _flush(self) -> None:
        self._flush_pending = False
        parts = self._encoder.take()
        transport = self._transport
        if not parts or transport is None or transport.is_closing():
            return
        if not self._out and not self._paused:
            if len(parts) == 2:
                if len(parts[1]) <= JOIN_MAX:
                    transport.write(parts[0] + parts[1])
                    return
            elif sum(map(len, parts)) <= 4 * JOIN_MAX:
                transport.write(b"".join(parts))
                return
            self._out.extend(parts)
            self._pump()
        else:
            self._out.extend(parts)

    def send_raw(self, parts: list) -> None:
        """Queue already-encoded packet parts (handshake)."""
        self._out.extend(parts)
        if not self._paused:
            self._pump()

    def _pump(self) -> None:
        """Write queued parts until the queue is empty or the transport pauses us."""
        out = self._out
        transport = self._transport
        if transport is None or self._lost.done() or transport.is_closing():
            return
        write = transport.write
        while out and not self._paused:
            p = out.popleft()
            n = len(p)
            if n <= JOIN_MAX:
                if out and len(out[0]) <= JOIN_MAX:
                    batch = [p]
                    while out and n < JOIN_MAX and len(out[0]) <= JOIN_MAX:
                        q = out.popleft()
                        batch.append(q)
                        n += len(q)
                    write(b"".join(batch))
                else:
                    write(p)
            elif n <= WRITE_CHUNK:
                write(p)
            else:
                mv = p if type(p) is memoryview else memoryview(p)
                write(mv[:WRITE_CHUNK])
                out.appendleft(mv[WRITE_CHUNK:])
        if not out and not self._paused:
            self._wake_drain()

    def _wake_drain(self) -> None:
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)

    async def _drain(self) -> None:
        while (self._out or self._paused) and not self._lost.done():
            w = self._drain_waiter
            if w is None:
                w = self._drain_waiter = self._loop.create_future()
            await w

    async def close(self) -> None:
        transport = self._transport
        if self._closed:
            # Already closed, or another close()/abort() is under way: that one owns
            # the transport; just wait until the connection is really gone.
            if transport is not None:
                await asyncio.shield(self._lost)
            return
        if self._flush_pending:
            self._flush()
        self._set_closed("closed locally", drop_inbox=True)
        self._inbox_bytes.clear()
        self._inbox_total = 0
        if transport is None:
            return
        try:
            await self._drain()
            if not transport.is_closing():
                transport.close()
            await asyncio.shield(self._lost)
        except asyncio.CancelledError:
            self.abort()
            raise

    def abort(self) -> None:
        self._out.clear()
        self._encoder.clear()
        if not self._closed or not self._lost.done():
            self._set_closed("aborted locally", drop_inbox=True)
            self._inbox_bytes.clear()
            self._inbox_total = 0
            t = self._transport
            if t is not None:
                t.abort()
        self._wake_drain()


# ====================================================================== handshake
