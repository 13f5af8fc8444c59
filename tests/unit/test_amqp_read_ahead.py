"""The read-ahead AMQP transport hands out frames exactly as py-amqp's own would, from fewer reads."""

from __future__ import annotations

import socket
import struct

import pytest

from shared.amqp_io import ReadAheadTCPTransport


def frame(payload: bytes, frame_type: int = 1, channel: int = 1) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


class CountingSocket:
    """A socket whose reads are counted."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.reads = 0

    def recv(self, n: int) -> bytes:
        self.reads += 1
        return self._sock.recv(n)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture
def wire():
    ours, broker = socket.socketpair()
    transport = ReadAheadTCPTransport("127.0.0.1:5672")
    transport.sock = CountingSocket(ours)
    transport._setup_transport()
    yield transport, broker
    ours.close()
    broker.close()


def test_many_frames_that_arrived_together_are_read_with_one_receive(wire):
    transport, broker = wire
    payloads = [bytes([n]) * (n * 100 + 1) for n in range(30)]
    broker.sendall(b"".join(frame(p) for p in payloads))

    assert [transport.read_frame()[2] for _ in payloads] == payloads
    assert transport.sock.reads == 1


def test_a_frame_split_across_arrivals_survives_a_timeout_in_its_middle(wire):
    transport, broker = wire
    whole = frame(b"x" * 5000)
    broker.sendall(whole[:3000])
    transport.sock.settimeout(0.05)

    with pytest.raises(socket.timeout):
        transport.read_frame()
    broker.sendall(whole[3000:] + frame(b"next"))

    assert transport.read_frame() == (1, 1, b"x" * 5000)
    assert transport.read_frame() == (1, 1, b"next")


def test_a_closed_connection_is_an_error_not_an_empty_frame(wire):
    transport, broker = wire
    broker.sendall(frame(b"last")[:4])
    broker.close()

    with pytest.raises(OSError, match="closed connection"):
        transport.read_frame()
