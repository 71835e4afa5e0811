"""A small read-only HTTP/1.1 and WebSocket server on asyncio, for the dashboard.

It owns the sockets and the two wire formats, nothing else: requests are `GET`/`HEAD`
only, one request per connection (`Connection: close`), headers capped at 16 KiB; a
route returns a `Response`, or `WEBSOCKET` to upgrade the connection (RFC 6455). A
WebSocket here only receives from the server: what the browser sends is read and
discarded, except close and ping. The server sends a frame to many sockets by encoding
it once (`ws_frame`) and writing the same bytes to each; a socket that stops reading
(more than `max_buffer` bytes waiting) is closed rather than buffered without bound.
No third-party package: the dashboard needs a few hundred lines of protocol, and the
scheduler then carries no web framework (see docs/design.md, "Dashboard").
"""

from __future__ import annotations

import asyncio
import inspect
import base64
import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger("shoal.dashboard")

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER = 16 * 1024
_MAX_WS_FRAME = 64 * 1024
_REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error"}  # fmt: skip
_SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: SAMEORIGIN\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:\r\n"
)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    #: the path as sent (percent-encoded): its slashes say how deep the page is
    raw_path: str = "/"


@dataclass(slots=True)
class Response:
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


#: a route returns this to accept a WebSocket on its path
WEBSOCKET = object()

Route = Callable[[Request], Any]


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One unmasked, unfragmented server-to-client frame (text by default)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += struct.pack("!BH", 126, n)
    else:
        head += struct.pack("!BQ", 127, n)
    return head + payload


class WebSocket:
    """A server-side WebSocket: `send_frame` with bytes from `ws_frame`; `closed` when gone;
    `query` is the query string it was opened with (what the page asks to be sent)."""

    __slots__ = ("closed", "max_buffer", "peer", "query", "writer")

    def __init__(self, writer: asyncio.StreamWriter, max_buffer: int, query: str = ""):
        self.writer = writer
        self.query = query
        self.closed = False
        self.max_buffer = max_buffer
        self.peer = writer.get_extra_info("peername")

    def send_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > self.max_buffer:
            logger.info("dashboard viewer %s is not reading; closing it", self.peer)
            self.close()
            return
        transport.write(frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            transport = self.writer.transport
            if not transport.is_closing():
                transport.write(ws_frame(b"", 8))
            self.writer.close()


class HTTPServer:
    """Serves `routes` (exact path -> handler) and `prefixes` (path prefix -> handler).
    `on_websocket(ws)` is called when a socket opens, `on_websocket_closed(ws)` when it
    closes."""

    def __init__(
        self,
        routes: dict[str, Route],
        prefixes: dict[str, Route],
        on_websocket: Callable[[WebSocket], None],
        on_websocket_closed: Callable[[WebSocket], None],
        max_buffer: int = 8 * 1024 * 1024,
    ):
        self.routes = routes
        self.prefixes = prefixes
        self.on_websocket = on_websocket
        self.on_websocket_closed = on_websocket_closed
        self.max_buffer = max_buffer
        self.server: asyncio.Server | None = None
        self._conns: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; return the port."""
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._one(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("dashboard request failed")
        finally:
            self._conns.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if len(head) > _MAX_HEADER:
            return self._write(writer, "HEAD", Response("header too large", "text/plain", 400))
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return self._write(writer, "GET", Response("bad request line", "text/plain", 400))
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        url = urlsplit(target)
        req = Request(method, unquote(url.path), url.query, headers, url.path)
        if method not in ("GET", "HEAD"):
            return self._write(writer, method, Response("read-only", "text/plain", 405, {"Allow": "GET, HEAD"}))
        handler = self.routes.get(req.path)
        if handler is None:
            for prefix, h in self.prefixes.items():
                if req.path.startswith(prefix):
                    handler = h
                    break
        if handler is None:
            return self._write(writer, method, Response(f"not found: {req.path}", "text/plain; charset=utf-8", 404))
        try:
            result = handler(req)
            if inspect.isawaitable(result):  # a page that asks the workers first
                result = await result
        except Exception:
            logger.exception("dashboard page %s failed", req.path)
            result = Response("internal error (see the scheduler's log)", "text/plain", 500)
        if result is WEBSOCKET:
            await self._websocket(req, reader, writer)
            return
        self._write(writer, method, result)
        await writer.drain()

    def _write(self, writer: asyncio.StreamWriter, method: str, r: Response) -> None:
        body = r.body.encode() if isinstance(r.body, str) else r.body
        extra = "".join(f"{k}: {v}\r\n" for k, v in r.headers.items())
        head = (
            f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'OK')}\r\n"
            f"Content-Type: {r.content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\nConnection: close\r\n{_SECURITY_HEADERS}{extra}\r\n"
        )
        writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))

    async def _websocket(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = req.headers.get("sec-websocket-key", "")
        if req.headers.get("upgrade", "").lower() != "websocket" or not key:
            return self._write(writer, "GET", Response("expected a WebSocket upgrade", "text/plain", 400))
        origin = req.headers.get("origin")
        if origin and urlsplit(origin).netloc != req.headers.get("host", ""):
            # a page from another site must not read the cluster's state through the browser
            return self._write(writer, "GET", Response("cross-origin WebSocket refused", "text/plain", 403))
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        ws = WebSocket(writer, self.max_buffer, req.query)
        self.on_websocket(ws)
        try:
            while not ws.closed:
                opcode, payload = await _read_frame(reader)
                if opcode == 8:  # close
                    break
                if opcode == 9:  # ping -> pong
                    ws.send_frame(ws_frame(payload, 10))
        finally:
            ws.close()
            self.on_websocket_closed(ws)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    opcode = b0 & 0x0F
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > _MAX_WS_FRAME:
        raise ConnectionError("WebSocket frame from the browser too large")
    mask = await reader.readexactly(4) if b1 & 0x80 else b""
    data = await reader.readexactly(n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return opcode, data
