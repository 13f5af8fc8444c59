"""A broker message as the services see it (``Delivery``), and the reading of one into it.

This is the worker's boundary with the broker: nothing a message carries is trusted
(contract §1). What py-amqp hands over is wrapped without decompressing or decoding
anything (``ReceivedMessage``); its properties are read as bounded text, whatever type
they came as; its body stays bytes; our own ``x-oms-`` headers are kept only on a
delivery through ``oms.retry``. Handlers, the pipeline, the disposer and the metrics
read the ``Delivery``: no kombu or py-amqp object goes further than the queue worker
(shared/queue_worker.py) and the disposer (shared/disposal.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import amqp

from shared import naming
from shared.headers import read_count, without_own

#: The longest AMQP short string (message id, content type, routing key...), in bytes.
SHORT_STRING_BYTES = 255


@dataclass(frozen=True)
class Delivery:
    """What a handler gets of a broker message: bytes and metadata, no kombu object."""

    body: bytes
    content_type: str | None
    routing_key: str
    message_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)  # our own x-oms- ones only when they came through oms.retry
    redelivered: bool = False
    event_type: str | None = None
    content_encoding: str | None = None
    #: What the service's ``decode`` made of the body on arrival (services/runtime/pipeline.py).
    decoded: object = None

    @property
    def failed_attempts(self) -> int:
        return read_count(self.headers.get(naming.HEADER_ATTEMPTS))

    @property
    def published_routing_key(self) -> str:
        """The routing key it was published under: a copy back through oms.retry arrives
        under its work queue's name, and its first failure recorded the original."""
        original = self.headers.get(naming.HEADER_ROUTING_KEY)
        return original if isinstance(original, str) and original else self.routing_key


#: What one handler run takes: each message (a ReceivedMessage, or the embedded broker's
#: kombu Message) with its Delivery.
Work = list[tuple[Any, Delivery]]


class ReceivedMessage:
    """A broker message as py-amqp hands it over, for the worker and the disposer.

    Not kombu's Message: building one decompresses a body marked with a ``compression``
    header, before anyone has looked at its size, and a body it cannot decompress makes
    its consumer raise out of the connection thread.
    """

    def __init__(self, raw: amqp.Message):
        properties = raw.properties or {}
        self._channel = raw.channel
        self.body = raw.body
        self.delivery_info = raw.delivery_info or {}
        self.delivery_tag = self.delivery_info.get("delivery_tag")
        self.properties = properties
        self.headers = properties.get("application_headers") or {}
        self.content_type = properties.get("content_type")
        self.content_encoding = properties.get("content_encoding")

    def ack(self, multiple: bool = False) -> None:
        self._channel.basic_ack(self.delivery_tag, multiple=multiple)


def received(message: Any) -> Any:
    """The broker callback's message, wrapped. The embedded broker's channel hands over
    kombu's messages; nothing outside the process publishes there."""
    return ReceivedMessage(message) if isinstance(message, amqp.Message) else message


def read_delivery(message: Any) -> Delivery:
    """The message's bytes and properties as a ``Delivery``; our own headers dropped unless
    it came through ``oms.retry``."""
    info, properties = message.delivery_info or {}, message.properties or {}
    headers = message.headers if isinstance(message.headers, dict) else {}
    if info.get("exchange") != naming.RETRY_EXCHANGE:
        headers = without_own(headers)  # contract §1: never read, never copied on
    return Delivery(
        body=_body(message),
        content_type=_short_string(message.content_type),
        content_encoding=_short_string(message.content_encoding),
        routing_key=_short_string(info.get("routing_key")) or "",
        message_id=_short_string(properties.get("message_id")),
        headers=dict(headers),
        redelivered=bool(info.get("redelivered")),
        event_type=_short_string(properties.get("type")),
    )


def bare_delivery(message: Any) -> Delivery:
    """What can still be read of a message whose Delivery could not be built: its bytes."""
    return Delivery(body=_body(message), content_type=None, routing_key="", message_id=None)


def _short_string(value: object) -> str | None:
    """An AMQP short string property as text that fits one again (a copy republishes it):
    undecodable bytes are replaced, which may lengthen them, so the text is cut to fit."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    while len(text.encode("utf-8", "surrogatepass")) > SHORT_STRING_BYTES:
        text = text[:-1]
    return text


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    return str(body).encode("utf-8", "surrogatepass")
