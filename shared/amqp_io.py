"""py-amqp reading ahead: one socket read for many frames, not three reads per frame.

py-amqp reads a frame in exactly-sized pieces (its 7-byte header, its payload, its end
octet), each a system call that also lets another thread take the interpreter lock: a
consumer receiving one message (three frames) made nine of them, and waited for the
lock after each.  This transport reads whatever has arrived, up to 64 KiB at a time,
and serves the frames from that buffer.  kombu takes it as its ``transport`` class.
"""
from __future__ import annotations

import errno
import socket

from amqp.transport import TCPTransport
from kombu.transport import pyamqp

_READ_AHEAD = 64 * 1024


class ReadAheadTCPTransport(TCPTransport):
    # py-amqp puts back a partly read frame through ``_read_buffer``: what is unread.
    @property
    def _read_buffer(self) -> bytes:
        return self._buffer[self._position:]

    @_read_buffer.setter
    def _read_buffer(self, unread: bytes) -> None:
        self._buffer, self._position = unread, 0

    def _read(self, n, initial=False, _errnos=(errno.EAGAIN, errno.EINTR)):
        available = len(self._buffer) - self._position
        if available >= n:
            start = self._position
            self._position += n
            return self._buffer[start:self._position]
        chunks = [self._buffer[self._position:]]
        self._buffer, self._position = b"", 0
        try:
            while available < n:
                try:
                    received = self._quick_recv(max(n - available, _READ_AHEAD))
                except OSError as exc:
                    if exc.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise socket.timeout()
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
    def Transport(self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None,
                  socket_settings=None, **kwargs):
        if ssl:
            return super().Transport(host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings,
                                     **kwargs)
        return ReadAheadTCPTransport(host, connect_timeout=connect_timeout, read_timeout=read_timeout,
                                     write_timeout=write_timeout, socket_settings=socket_settings, **kwargs)


class ReadAheadTransport(pyamqp.Transport):
    """kombu's py-amqp transport, reading ahead."""

    Connection = _Connection
