"""A small asyncio HTTP/1.1 GET client with keep-alive connections, for the tracker's hot path.

httpx's asyncio stack costs about a millisecond of CPU per request here (much of it
detecting the async library on every request), which caps one tracker at a few hundred
queries per second. The tracker only ever sends GETs with a JSON answer, so this client
does exactly that: plain or TLS connections kept alive and reused, ``Content-Length``,
chunked and read-until-close bodies, one retry on a fresh connection when a kept-alive
one turns out closed (a GET is safe to repeat). Answers come back as :class:`httpx.Response`
only when they are errors, so ``shared.http.raise_for_response`` classifies them as
everywhere else.
"""
from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlsplit

import httpx


class Http11Pool:
    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = (443 if self._tls else 80)
        self._host_header = self._host if self._port == default_port else f"{self._host}:{self._port}"
        self._ssl = ssl.create_default_context() if self._tls else None
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()

    async def get(self, path: str, headers: dict[str, str], timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); raises httpx.TimeoutException / httpx.TransportError."""
        request = (f"GET {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    reused = bool(self._idle)
                    reader, writer = self._idle.pop() if reused else await self._connect()
                    try:
                        writer.write(request)
                        status, answer_headers, body, keep = await _read_response(reader)
                    except (asyncio.IncompleteReadError, ConnectionError) as exc:
                        writer.close()
                        if reused:
                            continue  # the server closed an idle connection: a fresh one
                        raise httpx.RemoteProtocolError(f"connection lost: {exc}") from exc
                    except BaseException:
                        writer.close()
                        raise
                    if keep:
                        self._idle.append((reader, writer))
                    else:
                        writer.close()
                    return status, answer_headers, body
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {timeout_s:.1f}s") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def _connect(self):
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl, limit=2**20)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await _skip_trailers(reader)
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return int(status), headers, bytes(body), keep
    if "content-length" in headers:
        return int(status), headers, await reader.readexactly(int(headers["content-length"])), keep
    if int(status) in (204, 304) or 100 <= int(status) < 200:
        return int(status), headers, b"", keep
    return int(status), headers, await reader.read(), False


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
