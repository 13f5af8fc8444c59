"""py-amqp reading ahead: one socket read for many frames, not three reads per frame.

py-amqp reads a frame in exactly-sized pieces (its 7-byte header, its payload, its end
octet), each a system call that also lets another thread take the interpreter lock: a
consumer receiving one message (three frames) made nine of them, and waited for the
lock after each.  This transport reads whatever has arrived, up to 64 KiB at a time,
and serves the frames from that buffer.  kombu takes it as its ``transport`` class.

And py-amqp's decoders made total: a short string that is not UTF-8 stays bytes, and a
header py-amqp cannot decode costs only that header: the message's other headers
are read one by one and the unreadable ones dropped, instead of the connection.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

from amqp import serialization
from amqp.spec import Basic
from amqp.transport import TCPTransport
from kombu.transport import pyamqp

_READ_AHEAD = 64 * 1024


def _short_string(raw: Any) -> Any:
    """An AMQP short string (a property such as ``message_id``, a header's name) as text,
    or as the bytes it is when it is not UTF-8.

    py-amqp decodes them strictly in its frame reader: one message with an undecodable
    message id raised out of every consumer's connection, and came back to the next.
    Undecodable long strings py-amqp already keeps as bytes; short ones now the same.
    """
    if not isinstance(raw, bytes):
        return raw  # as py-amqp's own: anything else is already text
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw


serialization.pstr_t = _short_string  # read by its property and field-table decoders


#: Set on a message's properties when some of its headers could not be read: why, for the
#: consumer's log. Those headers are dropped; the message goes on like any other.
UNDECODABLE_HEADERS = "oms_undecodable_headers"
_HEADERS_FLAG = 0x2000
_decode_basic_properties: Callable[[bytes, int], tuple[dict[str, Any], int]] = serialization.decode_properties_basic
_UNREADABLE = (ValueError, OverflowError, OSError, RecursionError, struct.error, KeyError, IndexError, TypeError)
# How many bytes follow each AMQP field type code: fixed, or a 32-bit length first.
_FIXED_SIZE = {
    "t": 1,
    "b": 1,
    "B": 1,
    "s": 2,
    "U": 2,
    "u": 2,
    "I": 4,
    "i": 4,
    "f": 4,
    "D": 5,
    "L": 8,
    "l": 8,
    "d": 8,
    "T": 8,
    "V": 0,
}
_LENGTH_PREFIXED = frozenset("SxFA")


def _field_end(buf: bytes, position: int) -> int:
    """Where the field whose type code is at ``position`` ends, without reading its value."""
    code = chr(buf[position])
    if code in _LENGTH_PREFIXED:
        length: int
        (length,) = struct.unpack_from(">I", buf, position + 1)
        return position + 5 + length
    return position + 1 + _FIXED_SIZE[code]  # an unknown code: KeyError, nothing after it can be placed


def _readable_headers(buf: bytes, position: int, end: int) -> tuple[dict[str | bytes, Any], list[str | bytes]]:
    """The header table's entries that decode, and the names of those that do not."""
    headers: dict[str | bytes, Any]
    unreadable: list[str | bytes]
    headers, unreadable = {}, []
    while position < end:
        name_length = buf[position]
        name = serialization.pstr_t(bytes(buf[position + 1 : position + 1 + name_length]))
        position += 1 + name_length
        try:
            headers[name], position = serialization._read_item(buf, position)
        except _UNREADABLE:
            unreadable.append(name)
            position = _field_end(buf, position)
    return headers, unreadable


def _properties_reading_headers_one_by_one(buf: bytes, offset: int) -> tuple[dict[str, Any], int, list[str | bytes]]:
    (flags,) = struct.unpack_from(">H", buf, offset)
    position = offset + 2
    for flag in (0x8000, 0x4000):  # content type and encoding: the short strings before the table
        if flags & flag:
            position += 1 + buf[position]
    (length,) = struct.unpack_from(">I", buf, position)
    headers, unreadable = _readable_headers(buf, position + 4, position + 4 + length)
    skipped = 4 + length
    rest = (
        bytes(buf[:offset])
        + struct.pack(">H", flags & ~_HEADERS_FLAG)
        + bytes(buf[offset + 2 : position])
        + bytes(buf[position + skipped :])
    )
    properties, end = _decode_basic_properties(rest, offset)
    properties["application_headers"] = headers
    return properties, end + skipped, unreadable


def _decode_basic_properties_or_flag_headers(buf: bytes, offset: int) -> tuple[dict[str, Any], int]:
    # py-amqp decodes a header table in its frame reader, on the connection's thread: a
    # timestamp past year 9999 (ValueError, OverflowError), arrays nested a thousand deep
    # (RecursionError) raised out of the consumer, and the message came back to the next
    # one. Such a message keeps the headers that can be read; the others are dropped, as
    # a header nobody reads would be (one the contract needs, a `ce-` attribute, is then
    # missing, and the message is refused for that).
    try:
        return _decode_basic_properties(buf, offset)
    except _UNREADABLE as error:
        properties, end, unreadable = _properties_reading_headers_one_by_one(buf, offset)
        names = ", ".join(repr(name) for name in unreadable[:5]) or "the table"
        properties[UNDECODABLE_HEADERS] = (
            f"AMQP header {names[:300]} could not be read ({type(error).__name__}: {str(error)[:200]}) and was dropped"
        )
        return properties, end


serialization.PROPERTY_CLASSES[Basic.CLASS_ID] = _decode_basic_properties_or_flag_headers


class ReadAheadTCPTransport(TCPTransport):  # type: ignore[misc]  # py-amqp has no types: its class is Any
    # py-amqp puts back a partly read frame through ``_read_buffer``: what is unread.
    @property
    def _read_buffer(self) -> bytes:
        return self._buffer[self._position :]

    @_read_buffer.setter
    def _read_buffer(self, unread: bytes) -> None:
        self._buffer, self._position = unread, 0

    def _read(self, n: int, initial: bool = False, _errnos: tuple[int, ...] = (errno.EAGAIN, errno.EINTR)) -> bytes:
        available = len(self._buffer) - self._position
        if available >= n:
            start = self._position
            self._position += n
            return self._buffer[start : self._position]
        chunks = [self._buffer[self._position :]]
        self._buffer, self._position = b"", 0
        try:
            while available < n:
                try:
                    received = self._quick_recv(max(n - available, _READ_AHEAD))
                except OSError as exc:
                    if exc.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise socket.timeout() from exc
                        continue
                    raise
                if not received:
                    raise OSError("Server unexpectedly closed connection")
                chunks.append(received)
                available += len(received)
        except BaseException:
            self._buffer = b"".join(chunks)  # nothing read is lost: a later read resumes here
            raise
        data = b"".join(chunks)
        self._buffer, self._position = data, n
        return data[:n]


class _Connection(pyamqp.Connection):
    def Transport(
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> Any:
        if ssl:
            return super().Transport(host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings, **kwargs)
        return ReadAheadTCPTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            socket_settings=socket_settings,
            **kwargs,
        )


class ReadAheadTransport(pyamqp.Transport):
    """kombu's py-amqp transport, reading ahead."""

    Connection = _Connection
