"""Publishing many messages with the broker's confirms streaming back, not one at a time.

On AMQP the channel is put in confirm mode once; a whole batch is written without
waiting, then the connection is drained until the broker has acked or nacked every
delivery tag (it acks several at once with ``multiple``).  That is one round trip per
batch instead of one per message.  The embedded broker has no confirms: there each
message is simply published.

Every message is published ``mandatory`` (CONTRACT.md §1): one that no queue is bound
for comes back as a ``basic.return``, which the broker sends before the ack of that
publish, so once a batch is confirmed its returns are known too. A returned message
counts as not taken.

The batch's frames are written with py-amqp's frame writer, but collected and sent a few
dozen messages per socket write: its ``basic_publish`` would also try a non-blocking read
before each message and write each one on its own, several system calls per message.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterable, NamedTuple

from amqp import Message, spec
from amqp.serialization import dumps
from kombu.connection import Connection  # kombu's lazy __init__ exports it only implicitly

from shared import naming
from shared.broker import CONTENT_TYPE, Publisher, is_embedded

_WRITE_EVERY = 64  # messages per socket write


class Outgoing(NamedTuple):
    body: bytes
    routing_key: str
    message_id: str
    event_type: str
    headers: dict[str, Any] | None = None  # the event's trace context (shared/tracing.py)


class Confirms(list[bool]):
    """Per message of a batch, whether the broker took it: confirmed, and routed to a queue.

    ``returned`` maps the index of each message the broker handed back unroutable to its
    reason (``NO_ROUTE``); those are False too.
    """

    def __init__(self, taken: Iterable[bool], returned: dict[int, str] | None = None):
        super().__init__(taken)
        self.returned = returned or {}


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
        self._channel.events["basic_return"].add(self._on_return)
        self._next_tag = 1  # the broker numbers publishes on a confirm channel from 1
        self._waiting: dict[int, int] = {}  # delivery tag -> index in the batch
        self._confirmed: list[bool] = []
        self._batch: list[Outgoing] = []
        self._returned: dict[int, str] = {}

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

    def _on_return(self, error: Any, _exchange: str, routing_key: str, message: Any) -> None:
        # A return names no delivery tag: the message is found by its id (returns are rare).
        reason = f"{getattr(error, 'reply_text', None) or error} (routing key {routing_key})"
        message_id = message.properties.get("message_id")
        for index, outgoing in enumerate(self._batch):
            if outgoing.message_id == message_id:
                self._returned[index] = reason

    def publish_batch(self, messages: list[Outgoing]) -> Confirms:
        """Whether the broker took each message (False: nacked or returned)."""
        self._confirmed = [False] * len(messages)
        self._returned = {}
        self._batch = messages
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
        returned, self._batch = self._returned, []
        if not returned:
            return Confirms(self._confirmed)
        return Confirms([ok and index not in returned for index, ok in enumerate(self._confirmed)], returned)

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
                        "Bssbb", (0, self._exchange, outgoing.routing_key, True, False)
                    )  # mandatory
                message = Message(
                    outgoing.body,
                    delivery_mode=2,
                    content_type=CONTENT_TYPE,
                    content_encoding="binary",
                    message_id=outgoing.message_id,
                    type=outgoing.event_type,
                    application_headers=outgoing.headers or {},
                )
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

    def publish_batch(self, messages: list[Outgoing]) -> Confirms:
        for outgoing in messages:
            self._publisher.publish(
                outgoing.body,
                routing_key=outgoing.routing_key,
                message_id=outgoing.message_id,
                event_type=outgoing.event_type,
                headers=outgoing.headers,
            )
        return Confirms([True] * len(messages))


def batch_publisher(url: str, connection: Connection, timeout_s: float = 30) -> StreamingPublisher | PlainPublisher:
    return PlainPublisher(connection) if is_embedded(url) else StreamingPublisher(connection, timeout_s=timeout_s)
