"""A small asyncio HTTP/1.1 GET client with keep-alive connections, for the tracker's hot path.

httpx's asyncio stack costs about a millisecond of CPU per request here (much of it
detecting the async library on every request), which caps one tracker at a few hundred
queries per second; aiohttp, measured in ``benchmarks/tracker.py``, does about 40% of this
client's rate at 0 ms carrier latency, below the tracker's target (docs/benchmarks-tracker.md). The tracker only ever sends GETs with a JSON
answer, so this client does exactly that: plain or TLS connections kept alive and reused,
``Content-Length``, chunked and read-until-close bodies, one retry on a fresh connection
when a kept-alive one turns out closed before it answered (a GET is safe to repeat).

Carriers' answers are untrusted (CONTRACT.md §4), so the parser is strict where RFC 9112
lets a client be, and every answer is bounded: the status line and each header line are
checked against the grammar (no control characters, no obsolete line folding), at most
:data:`MAX_HEADERS` header lines and :data:`MAX_HEAD_BYTES` of head, a body of at most
``max_body_bytes``, ``Content-Length`` digits only and never beside ``Transfer-Encoding``,
chunk sizes hexadecimal and each chunk ended by CRLF, an interim (``1xx``) answer an error
(our requests never ask for one), and the whole exchange within the caller's timeout, so
an answer that drips in byte by byte ends at the deadline. Any of these raises
``httpx.RemoteProtocolError`` and the connection is closed, never reused. ``tests/integration/
test_http11_against_h11.py`` checks the verdicts against ``h11``. At most ``max_idle``
connections are kept, each for at most ``idle_expiry_s``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

import httpx

from shared.http import HEADER_LINE, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADERS, STATUS_LINE

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


Answer = tuple[int, dict[str, str], bytes]


class Http11Pool:
    def __init__(
        self,
        base_url: str,
        max_idle: int = 256,
        max_body_bytes: int = MAX_BODY_BYTES,
        idle_expiry_s: float = IDLE_EXPIRY_S,
    ):
        parts = urlsplit(base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = 443 if self._tls else 80
        self._host_header = self._host if self._port == default_port else f"{self._host}:{self._port}"
        self._ssl = ssl.create_default_context() if self._tls else None
        self._max_idle, self._max_body, self._idle_expiry_s = max_idle, max_body_bytes, idle_expiry_s
        # (reader, writer, idle since): the newest on the right.
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = deque()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def get(self, path: str, headers: dict[str, str], timeout_s: float) -> Answer:
        """(status, lower-cased headers, body); raises httpx.TimeoutException / httpx.TransportError."""
        fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        # A line break in a value (a carriers file's api_version, say) would forge a header: never sent.
        breaks = len(headers)
        if (
            fields.count("\n") != breaks
            or fields.count("\r") != breaks
            or "\x00" in fields
            or any(c in path for c in " \r\n\x00")
        ):
            raise ValueError(f"a header value or the path holds a line break or NUL: {sorted(headers)}")
        request = f"GET {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n{fields}\r\n".encode("latin-1")
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
                status, answer_headers, body, keep = await _read_response(reader, self._max_body)
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

    async def _connect(self):
        # The reader's limit bounds every line it reads (status, headers, chunk sizes).
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=MAX_HEAD_BYTES)

    def close_idle(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()

    async def aclose(self) -> None:
        self.close_idle()


async def _line(reader: asyncio.StreamReader, what: str) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolViolation(f"{what} longer than {MAX_HEAD_BYTES} bytes") from None


async def _read_response(reader: asyncio.StreamReader, max_body: int) -> tuple[int, dict[str, str], bytes, bool]:
    try:
        first = await _line(reader, "status line")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _ClosedBeforeAnswer() from None
        raise
    except ConnectionResetError:
        raise _ClosedBeforeAnswer() from None
    match = STATUS_LINE.fullmatch(first)
    if match is None:
        raise _NoStatusLine(f"not an HTTP/1.1 status line: {first[:80]!r}")
    minor, status = match[1], int(match[2])
    if 100 <= status < 200:
        raise ProtocolViolation(f"interim answer {status}: our requests ask for none")
    headers = await _read_fields(reader, len(first))
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    keep = "close" not in connection and (minor == b"1" or "keep-alive" in connection)
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise ProtocolViolation("both Transfer-Encoding and Content-Length")
        if headers["transfer-encoding"].strip().lower() != "chunked":
            raise ProtocolViolation(f"unsupported Transfer-Encoding {headers['transfer-encoding'][:40]!r}")
        return status, headers, await _read_chunked(reader, max_body), keep
    if status in (204, 304):
        return status, headers, b"", keep
    if "content-length" in headers:
        return status, headers, await reader.readexactly(_content_length(headers["content-length"], max_body)), keep
    body = await reader.read(max_body + 1)
    while len(body) <= max_body and (more := await reader.read(max_body + 1 - len(body))):
        body += more
    if len(body) > max_body:
        raise ProtocolViolation(f"answer body over {max_body} bytes")
    return status, headers, body, False


async def _read_fields(reader: asyncio.StreamReader, head_bytes: int) -> dict[str, str]:
    """Header (or trailer) lines up to the empty one; a repeated name's values joined with commas."""
    fields: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await _line(reader, "header line")
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


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        line = await _line(reader, "chunk size line")
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise ProtocolViolation(f"bad chunk size line: {line[:40]!r}")
        size = int(match[1], 16)
        if size == 0:
            await _read_fields(reader, 0)  # trailers: read and dropped
            return bytes(body)
        if len(body) + size > max_body:
            raise ProtocolViolation(f"answer body over {max_body} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolViolation("a chunk not ended by CRLF")
