"""A small HTTP/1.1 client with keep-alive connections: one answer reader, two drivers.

httpx costs about a millisecond of CPU per request here (its asyncio stack, much of it
detecting the async library on every request; its sync stack, h11 and httpcore, 0.8 ms
more than this client on the same call), which capped one tracker at a few hundred
queries per second and made the HTTP call a third of an Omnitron relay's CPU. Our peers
(carriers, Omnitron) answer small JSON bodies, so this client does exactly that: plain or
TLS connections kept alive and reused, ``Content-Length``, chunked and read-until-close
bodies. :class:`Http11Pool` is the tracker's (asyncio, GETs, hundreds in flight from one
thread); :class:`SyncHttp11Pool` the shipper's and the Omnitron publisher's (blocking
sockets, any method, one request per thread at a time). Both read answers with the same
:func:`_answer` and hold requests to the same rules (:func:`request_head`).

Peers' answers are untrusted (CONTRACT.md §4), so the reader is strict where RFC 9112 lets
a client be, and every answer is bounded: the status line and each header line are
checked against the grammar (no control characters, no obsolete line folding), at most
:data:`MAX_HEADERS` header lines and :data:`MAX_HEAD_BYTES` of head, a body of at most
``max_body_bytes``, ``Content-Length`` digits only and never beside ``Transfer-Encoding``,
chunk sizes hexadecimal and each chunk ended by CRLF, an interim (``1xx``) answer an error
(our requests never ask for one), and the whole exchange within the caller's timeout, so
an answer that drips in byte by byte ends at the deadline. Any of these raises
``httpx.RemoteProtocolError`` and the connection is closed, never reused (httpx's error
types, so ``shared.http.call_with_retries`` judges them as it always has).
``tests/integration/test_http11_against_h11.py`` checks the verdicts against ``h11``. At
most ``max_idle`` connections are kept, each for at most ``idle_expiry_s``; a kept-alive
connection that turns out closed before it answered is replaced by a fresh one, once
(the peer closed it idle; the request never reached its application).
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

import httpx

#: The largest answer body read from a peer (CONTRACT.md §4); a longer one is an error.
MAX_BODY_BYTES = 1 << 20
#: An answer's head (status line and headers) is at most this many header lines and bytes.
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
#: The grammar an answer's head is held to (RFC 9112 §4 and §5, without obsolete line folding).
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?\r\n")
HEADER_LINE = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+[ \t]+)*[\x21-\x7e\x80-\xff]*)"
    rb"[ \t]*\r\n"
)

#: A kept-alive connection unused for longer is closed rather than reused: servers close
#: idle ones after a few seconds, and reusing one the server is just closing costs a retry.
IDLE_EXPIRY_S = 5.0

_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\t\x20-\x7e\x80-\xff]*)?\r\n")


class ProtocolViolation(Exception):
    """The answer breaks HTTP/1.1 or one of our bounds."""


class _ClosedBeforeAnswer(Exception):
    """The connection ended before a single byte of the answer."""


class _NoStatusLine(ProtocolViolation):
    """What came first was no status line: on a kept-alive connection, perhaps the rest of
    an earlier answer that said it was shorter than it was."""


#: (status, lower-cased headers, body)
Answer = tuple[int, dict[str, str], bytes]


def request_head(method: str, target: str, host: str, headers: dict[str, str]) -> bytes:
    """The request line and headers; a line break or NUL in a value or the target (a carriers
    file's api_version, say) would forge a header, so it is never sent (ValueError)."""
    fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    breaks = len(headers)
    if (
        fields.count("\n") != breaks
        or fields.count("\r") != breaks
        or "\x00" in fields
        or any(c in target for c in " \r\n\x00")
    ):
        raise ValueError(f"a header value or the path holds a line break or NUL: {sorted(headers)}")
    return f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n".encode("latin-1")


class _Origin:
    """Scheme, host and port of a base URL, and its path prefix."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"not an http or https URL: {parts.scheme!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = self.host if self.port == (443 if self.tls else 80) else f"{self.host}:{self.port}"
        self.ssl = ssl.create_default_context() if self.tls else None


# ---- the answer reader: what to read next, as requests its driver fulfils ----------------
#
# It yields (_LINE, what) for a line ending in CRLF (at most MAX_HEAD_BYTES), (_EXACTLY, n)
# for n bytes, (_SOME, n) for up to n bytes (b"" at the end of the stream), and returns
# (status, headers, body, keep-alive). Its driver raises _ClosedBeforeAnswer when the
# stream ends before the status line's first byte.
_LINE, _EXACTLY, _SOME, _STATUS = "line", "exactly", "some", "status"
#: (status, headers, body, keep the connection alive)
_Parsed = tuple[int, dict[str, str], bytes, bool]
_Reads = Generator[tuple[str, Any], bytes, _Parsed]


def _answer(max_body: int) -> _Reads:
    first = yield (_STATUS, "status line")
    match = STATUS_LINE.fullmatch(first)
    if match is None:
        raise _NoStatusLine(f"not an HTTP/1.1 status line: {first[:80]!r}")
    minor, status = match[1], int(match[2])
    if 100 <= status < 200:
        raise ProtocolViolation(f"interim answer {status}: our requests ask for none")
    headers = yield from _fields(len(first))
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    keep = "close" not in connection and (minor == b"1" or "keep-alive" in connection)
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise ProtocolViolation("both Transfer-Encoding and Content-Length")
        if headers["transfer-encoding"].strip().lower() != "chunked":
            raise ProtocolViolation(f"unsupported Transfer-Encoding {headers['transfer-encoding'][:40]!r}")
        return status, headers, (yield from _chunked(max_body)), keep
    if status in (204, 304):
        return status, headers, b"", keep
    if "content-length" in headers:
        return status, headers, (yield (_EXACTLY, _content_length(headers["content-length"], max_body))), keep
    body = yield (_SOME, max_body + 1)
    while len(body) <= max_body and (more := (yield (_SOME, max_body + 1 - len(body)))):
        body += more
    if len(body) > max_body:
        raise ProtocolViolation(f"answer body over {max_body} bytes")
    return status, headers, body, False


def _fields(head_bytes: int) -> Generator[tuple[str, Any], bytes, dict[str, str]]:
    """Header (or trailer) lines up to the empty one; a repeated name's values joined with commas."""
    fields: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = yield (_LINE, "header line")
        head_bytes += len(line)
        if head_bytes > MAX_HEAD_BYTES:
            raise ProtocolViolation(f"answer head over {MAX_HEAD_BYTES} bytes")
        if line == b"\r\n":
            return fields
        match = HEADER_LINE.fullmatch(line)
        if match is None:
            raise ProtocolViolation(f"malformed header line: {line[:80]!r}")
        name, value = match[1].decode("ascii").lower(), match[2].decode("latin-1")
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    raise ProtocolViolation(f"more than {MAX_HEADERS} header lines")


def _content_length(value: str, max_body: int) -> int:
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1 or not (length := lengths.pop()).isascii() or not length.isdigit() or len(length) > 19:
        raise ProtocolViolation(f"bad Content-Length {value[:40]!r}")
    if int(length) > max_body:
        raise ProtocolViolation(f"answer body of {int(length)} bytes, over {max_body}")
    return int(length)


def _chunked(max_body: int) -> Generator[tuple[str, Any], bytes, bytes]:
    body = bytearray()
    while True:
        line = yield (_LINE, "chunk size line")
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise ProtocolViolation(f"bad chunk size line: {line[:40]!r}")
        size = int(match[1], 16)
        if size == 0:
            yield from _fields(0)  # trailers: read and dropped
            return bytes(body)
        if len(body) + size > max_body:
            raise ProtocolViolation(f"answer body over {max_body} bytes")
        body += yield (_EXACTLY, size)
        if (yield (_EXACTLY, 2)) != b"\r\n":
            raise ProtocolViolation("a chunk not ended by CRLF")


# ---- the asyncio driver (the tracker) ---------------------------------------------------


class Http11Pool:
    """GETs on kept-alive asyncio connections to one base URL, many in flight from one loop."""

    def __init__(
        self,
        base_url: str,
        max_idle: int = 256,
        max_body_bytes: int = MAX_BODY_BYTES,
        idle_expiry_s: float = IDLE_EXPIRY_S,
    ):
        self._origin = _Origin(base_url)
        self._max_idle, self._max_body, self._idle_expiry_s = max_idle, max_body_bytes, idle_expiry_s
        # (reader, writer, idle since): the newest on the right.
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = deque()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def get(self, path: str, headers: dict[str, str], timeout_s: float) -> Answer:
        """(status, lower-cased headers, body); raises httpx.TimeoutException / httpx.TransportError."""
        request = request_head("GET", self._origin.prefix + path, self._origin.host_header, headers)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no whole answer within {timeout_s:.1f}s") from exc
        except ProtocolViolation as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def _exchange(self, request: bytes) -> Answer:
        while True:
            idle = self._take_idle()
            reader, writer = idle if idle is not None else await self._connect()
            try:
                writer.write(request)
                status, answer_headers, body, keep = await _read_async(reader, _answer(self._max_body))
            except (_ClosedBeforeAnswer, _NoStatusLine) as exc:
                writer.close()
                if idle is not None:
                    # The server closed an idle connection, or left bytes on it after an earlier
                    # answer: a fresh one, so one hostile answer never fails another shipment's.
                    continue
                if isinstance(exc, _NoStatusLine):
                    raise
                raise httpx.RemoteProtocolError("connection closed before an answer") from None
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                writer.close()
                raise httpx.RemoteProtocolError(f"connection lost in the middle of the answer: {exc}") from exc
            except BaseException:
                writer.close()
                raise
            self._give_back(reader, writer, keep)
            return status, answer_headers, body

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since > self._idle_expiry_s:  # and so has every older one
                writer.close()
                self.close_idle()
                return None
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def _give_back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool) -> None:
        if keep and len(self._idle) < self._max_idle:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The reader's limit bounds every line it reads (status, headers, chunk sizes).
        origin = self._origin
        return await asyncio.open_connection(origin.host, origin.port, ssl=origin.ssl, limit=MAX_HEAD_BYTES)

    def close_idle(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()

    async def aclose(self) -> None:
        self.close_idle()


async def _read_async(reader: asyncio.StreamReader, reads: _Reads) -> _Parsed:
    need = next(reads)
    while True:
        kind, arg = need
        if kind is _STATUS:
            try:
                data = await _line(reader, arg)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _ClosedBeforeAnswer() from None
                raise
            except ConnectionResetError:
                raise _ClosedBeforeAnswer() from None
        elif kind is _LINE:
            data = await _line(reader, arg)
        elif kind is _EXACTLY:
            data = await reader.readexactly(arg)
        else:
            data = await reader.read(arg)
        try:
            need = reads.send(data)
        except StopIteration as done:
            parsed: _Parsed = done.value
            return parsed


async def _line(reader: asyncio.StreamReader, what: str) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolViolation(f"{what} longer than {MAX_HEAD_BYTES} bytes") from None


# ---- the blocking driver (the shipper's carrier calls, the Omnitron publisher) ----------


class SyncHttp11Pool:
    """Requests on kept-alive blocking connections to one origin; safe to share between threads
    (each request has a connection to itself; the idle ones are kept under a lock)."""

    def __init__(self, base_url: str, max_idle: int = 20, idle_expiry_s: float = IDLE_EXPIRY_S):
        self._origin = _Origin(base_url)
        self._max_idle, self._idle_expiry_s = max_idle, idle_expiry_s
        self._idle: deque[tuple[socket.socket, float]] = deque()
        self._lock = threading.Lock()

    @property
    def host_header(self) -> str:
        return self._origin.host_header

    def request(self, head: bytes, body: bytes, timeout_s: float, max_body_bytes: int = MAX_BODY_BYTES) -> Answer:
        """One exchange, its answer whole within ``timeout_s``; raises httpx.TimeoutException /
        httpx.TransportError (``ConnectError``/``ConnectTimeout`` only when nothing was sent)."""
        deadline = time.monotonic() + timeout_s
        while True:
            idle = self._take_idle()
            sock = idle if idle is not None else self._connect(deadline)
            stream = _SocketStream(sock, deadline)
            try:
                stream.send(head + body)
                status, headers, answer, keep = stream.read(_answer(max_body_bytes))
            except (_ClosedBeforeAnswer, _NoStatusLine) as exc:
                sock.close()
                if idle is not None:
                    continue  # closed while idle, or bytes left on it by an earlier answer: a fresh one
                if isinstance(exc, _NoStatusLine):
                    raise httpx.RemoteProtocolError(str(exc)) from None
                raise httpx.RemoteProtocolError("connection closed before an answer") from None
            except TimeoutError as exc:
                sock.close()
                raise httpx.ReadTimeout(f"no whole answer within {timeout_s:.1f}s") from exc
            except ProtocolViolation as exc:
                sock.close()
                raise httpx.RemoteProtocolError(str(exc)) from exc
            except OSError as exc:
                sock.close()
                if idle is not None and not stream.answered:
                    continue  # a kept-alive connection the peer had closed (broken pipe): a fresh one
                # Reset or broken in the middle: it may have arrived.
                raise httpx.ReadError(f"connection lost in the middle of the exchange: {exc}") from exc
            except BaseException:
                sock.close()
                raise
            self._give_back(sock, keep)
            return status, headers, answer

    def _connect(self, deadline: float) -> socket.socket:
        origin = self._origin
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.ConnectTimeout("the request's total deadline passed before connecting")
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout=left)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.ssl is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = origin.ssl.wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection within {left:.1f}s") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return sock

    def _take_idle(self) -> socket.socket | None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock, since = self._idle.pop()
            if now - since > self._idle_expiry_s:
                sock.close()
                continue
            # Readable while idle: closed by the peer, or bytes nobody asked for. Either way not
            # reused. poll, not select: select refuses descriptors past 1023.
            readable = select.poll()
            readable.register(sock, select.POLLIN)
            if not readable.poll(0):
                return sock
            sock.close()

    def _give_back(self, sock: socket.socket, keep: bool) -> None:
        with self._lock:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append((sock, time.monotonic()))
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, deque()
        for sock, _ in idle:
            sock.close()


class _SocketStream:
    """A blocking socket read through a buffer, every wait clamped to the request's deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline
        self._buffer = bytearray()
        self._answered = False

    def _wait_left(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's total deadline passed")
        self._sock.settimeout(left)

    @property
    def answered(self) -> bool:
        """Some of the answer has been read."""
        return self._answered

    def send(self, data: bytes) -> None:
        self._wait_left()
        self._sock.sendall(data)

    def _fill(self) -> bool:
        self._wait_left()
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._answered = True
        return data

    def line(self, what: str) -> bytes:
        searched = 0
        while True:
            end = self._buffer.find(b"\r\n", max(searched - 1, 0))
            if end >= 0:
                if end + 2 > MAX_HEAD_BYTES:
                    raise ProtocolViolation(f"{what} longer than {MAX_HEAD_BYTES} bytes")
                return self._take(end + 2)
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolViolation(f"{what} longer than {MAX_HEAD_BYTES} bytes")
            searched = len(self._buffer)
            if not self._fill():
                if not self._buffer and not self._answered:
                    raise _ClosedBeforeAnswer()
                raise ProtocolViolation(f"connection closed in the middle of the {what}")

    def exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise ProtocolViolation(f"connection closed {n - len(self._buffer)} bytes before the body's end")
        return self._take(n)

    def some(self, n: int) -> bytes:
        if not self._buffer and not self._fill():
            return b""
        return self._take(min(n, len(self._buffer)))

    def read(self, reads: _Reads) -> _Parsed:
        need = next(reads)
        while True:
            kind, arg = need
            try:
                if kind is _STATUS or kind is _LINE:
                    data = self.line(arg)
                elif kind is _EXACTLY:
                    data = self.exactly(arg)
                else:
                    data = self.some(arg)
            except ConnectionResetError:
                if not self._answered:
                    raise _ClosedBeforeAnswer() from None
                raise
            try:
                need = reads.send(data)
            except StopIteration as done:
                parsed: _Parsed = done.value
                return parsed
