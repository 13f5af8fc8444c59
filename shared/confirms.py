"""Publishing many messages with the broker's confirms streaming back, not one at a time.

On AMQP the channel is put in confirm mode once; a whole batch is written without
waiting, then the connection is drained until the broker has acked or nacked every
delivery tag (it acks several at once with ``multiple``).  That is one round trip per
batch instead of one per message.  The embedded broker has no confirms: there each
message is simply published.

The batch's frames are written with py-amqp's frame writer, but collected and sent a few
dozen messages per socket write: its ``basic_publish`` would also try a non-blocking read
before each message and write each one on its own, several system calls per message.
"""
from __future__ import annotations

import socket
import time
from typing import NamedTuple

from amqp import Message, spec
from amqp.serialization import dumps
from kombu import Connection

from shared import naming
from shared.broker import CONTENT_TYPE, Publisher, is_embedded


_WRITE_EVERY = 64  # messages per socket write


class Outgoing(NamedTuple):
    body: bytes
    routing_key: str
    message_id: str
    event_type: str


class ConfirmTimeout(ConnectionError):
    """The broker did not confirm in time: the connection is not to be trusted."""


class StreamingPublisher:
    """AMQP: publishes a batch, then waits for the confirms of all of it."""

    def __init__(self, connection: Connection, exchange: str = naming.EVENTS_EXCHANGE, timeout_s: float = 30):
        self._amqp = connection.connection  # py-amqp's own connection, under kombu's
        self._exchange = exchange
        self._timeout_s = timeout_s
        self._channel = self._amqp.channel()
        self._channel.confirm_select()
        self._channel.events["basic_ack"].add(self._on_ack)
        self._channel.events["basic_nack"].add(self._on_nack)
        self._next_tag = 1  # the broker numbers publishes on a confirm channel from 1
        self._waiting: dict[int, int] = {}  # delivery tag -> index in the batch
        self._confirmed: list[bool] = []

    def _settle(self, tag: int, multiple: bool, confirmed: bool) -> None:
        tags = [tag]
        if multiple:
            # Tags were added in ascending order: the ones covered come first.
            tags = []
            for waiting in self._waiting:
                if waiting > tag:
                    break
                tags.append(waiting)
        for t in tags:
            index = self._waiting.pop(t, None)
            if index is not None:
                self._confirmed[index] = confirmed

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, True)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, False)

    def publish_batch(self, messages: list[Outgoing]) -> list[bool]:
        """Whether the broker confirmed each message (False: nacked)."""
        self._confirmed = [False] * len(messages)
        self._write_all(messages)
        deadline = time.monotonic() + self._timeout_s
        while self._waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConfirmTimeout(f"{len(self._waiting)} publishes unconfirmed after {self._timeout_s:g}s")
            try:
                self._amqp.drain_events(timeout=min(remaining, 1.0))
            except socket.timeout:
                pass
        return self._confirmed

    def _write_all(self, messages: list[Outgoing]) -> None:
        transport = self._amqp.transport
        write_frame = self._amqp.frame_writer
        channel_id = self._channel.channel_id
        publish_args: dict[str, bytes] = {}  # per routing key: the basic.publish arguments
        frames: list[bytes] = []
        send = transport._write
        transport._write = lambda data: frames.append(bytes(data))  # the writer reuses its buffer
        try:
            for index, outgoing in enumerate(messages):
                args = publish_args.get(outgoing.routing_key)
                if args is None:
                    args = publish_args[outgoing.routing_key] = dumps(
                        "Bssbb", (0, self._exchange, outgoing.routing_key, False, False))
                message = Message(outgoing.body, delivery_mode=2, content_type=CONTENT_TYPE,
                                  content_encoding="binary", message_id=outgoing.message_id,
                                  type=outgoing.event_type, application_headers={})
                self._waiting[self._next_tag] = index
                self._next_tag += 1
                write_frame(1, channel_id, spec.Basic.Publish, args, message)
                if len(frames) >= _WRITE_EVERY:  # the broker starts on these while the rest are built
                    send(b"".join(frames))
                    frames.clear()
        finally:
            transport._write = send
        transport.write(b"".join(frames))


class PlainPublisher:
    """The embedded broker: published is as good as confirmed."""

    def __init__(self, connection: Connection):
        self._publisher = Publisher(connection)
        self._connection = connection

    def publish_batch(self, messages: list[Outgoing]) -> list[bool]:
        for outgoing in messages:
            self._publisher.publish(outgoing.body, routing_key=outgoing.routing_key,
                                    message_id=outgoing.message_id, event_type=outgoing.event_type)
        return [True] * len(messages)


def batch_publisher(url: str, connection: Connection) -> StreamingPublisher | PlainPublisher:
    return PlainPublisher(connection) if is_embedded(url) else StreamingPublisher(connection)
