"""kombu connections, the topology (declared from names in shared/naming.py) and confirmed publishing."""

# mypy: untyped-calls-exclude=kombu
# (kombu has few annotations: its connections, exchanges and queues are called here as they are.)
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from shared import naming
from shared.amqp_io import ReadAheadTransport

CONTENT_TYPE = "application/cloudevents+json"


def connect(url: str, heartbeat: float = 30) -> Connection:
    """A lazy connection (nothing is opened until it is used), publishing with confirms."""
    if is_embedded(url):
        # The in-process broker is polled; its default second between polls is all latency.
        return Connection(url, transport_options={"polling_interval": 0.01})
    return Connection(
        url,
        heartbeat=heartbeat,
        transport=ReadAheadTransport,
        transport_options={"confirm_publish": True, "max_retries": 0},
        connect_timeout=5,
    )


FIRST_RECONNECT_S = 0.5


def keep_connected(
    url: str,
    stop: threading.Event,
    session: Callable[[Connection, Callable[[], None]], None],
    *,
    recoverable: Callable[[Connection], tuple[type[BaseException], ...]],
    lost: Callable[[BaseException, float], None],
    max_backoff_s: float,
) -> None:
    """Runs ``session(connection, connected)`` on a fresh connection until ``stop`` is set.

    When it fails with one of ``recoverable(connection)``, ``lost(error, wait_s)`` is told,
    and after the wait (doubling from 0.5 s up to ``max_backoff_s``) it starts over on a new
    connection; the session calls ``connected()`` once it is set up, which resets the wait.
    """
    backoff = FIRST_RECONNECT_S

    def connected() -> None:
        nonlocal backoff
        backoff = FIRST_RECONNECT_S

    while not stop.is_set():
        connection = connect(url)
        try:
            connection.ensure_connection(max_retries=1)
            session(connection, connected)
        except recoverable(connection) as exc:
            lost(exc, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        finally:
            try:
                connection.release()
            except Exception:
                pass


def events_exchange() -> Exchange:
    return Exchange(naming.EVENTS_EXCHANGE, type="topic", durable=True)


def retry_exchange() -> Exchange:
    """Where retries come back from: each work queue is bound to it under its own name."""
    return Exchange(naming.RETRY_EXCHANGE, type="direct", durable=True)


def is_embedded(url: str) -> bool:
    return url.startswith("memory://")


@dataclass(frozen=True)
class Subscription:
    """One service's work queue and the routing keys it is bound with."""

    service: str
    routing_keys: tuple[str, ...]


@dataclass
class Topology:
    subscriptions: list[Subscription]
    retry_delays_s: list[float]
    queue_type: str = "classic"
    delivery_limit: int = 50
    exchange: Exchange = field(init=False)

    def __post_init__(self) -> None:
        self.exchange = events_exchange()

    def _queue_arguments(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        arguments = dict(extra or {})
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments

    def work_queue(self, subscription: Subscription) -> Queue:
        arguments = {}
        if self.queue_type == "quorum":
            # A message that crashes its consumer over and over is dead-lettered by the
            # broker itself, at least once, instead of looping forever.
            arguments = {
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": naming.dead_letter_queue(subscription.service),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        # No exchange on the Queue itself: kombu would add a binding with an empty
        # routing key.  The bindings are exactly the subscription's, made in declare().
        return Queue(
            naming.work_queue(subscription.service), durable=True, queue_arguments=self._queue_arguments(arguments)
        )

    def dead_letter_queue(self, service: str) -> Queue:
        # Classic in every mode: operators read dead letters again and again (dlq list,
        # show), and a quorum queue would count each read as a delivery and lose order.
        return Queue(naming.dead_letter_queue(service), durable=True)

    def retry_queues(self, service: str) -> list[Queue]:
        # Classic even in quorum mode: quorum queues honour message TTL only from
        # RabbitMQ 3.12 on, and a message waits here only for its delay.  An expired copy
        # goes back through oms.retry: that exchange is what makes its x-oms- headers ours.
        return [
            Queue(
                naming.retry_queue(service, delay),
                durable=True,
                queue_arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": naming.RETRY_EXCHANGE,
                    "x-dead-letter-routing-key": naming.work_queue(service),
                },
            )
            for delay in self.retry_delays_s
        ]

    def declare(self, connection: Connection, services: list[str] | None = None) -> list[str]:
        """Declares the exchanges and the queues of ``services`` (all when None); returns their names."""
        channel = connection.default_channel
        self.exchange(channel).declare()
        retries = retry_exchange()
        retries(channel).declare()
        declared = [naming.EVENTS_EXCHANGE, naming.RETRY_EXCHANGE]
        for subscription in self.subscriptions:
            if services is not None and subscription.service not in services:
                continue
            queue = self.work_queue(subscription)(channel)
            queue.declare()
            for key in subscription.routing_keys:
                queue.bind_to(exchange=self.exchange, routing_key=key)
            queue.bind_to(exchange=retries, routing_key=queue.name)
            others = [self.dead_letter_queue(subscription.service), *self.retry_queues(subscription.service)]
            for other in others:
                other(channel).declare()
            declared += [queue.name, *(q.name for q in others)]
        return declared


class Unroutable(Exception):
    """The broker returned a mandatory publish: no queue is bound for its routing key.

    Raised once the publish's confirm has come, so the channel is ready for the next one.
    """

    def __init__(self, exchange: str, routing_key: str, reply_code: int | None, reply_text: str):
        self.exchange, self.routing_key, self.reply_code, self.reply_text = (
            exchange,
            routing_key,
            reply_code,
            reply_text,
        )
        super().__init__(
            f"the broker returned a message published to {exchange or '(the default exchange)'} "
            f"with routing key {routing_key!r}: {reply_code} {reply_text} (no queue takes it)"
        )


class Publisher:
    """Publishes persistent, ``mandatory`` messages and waits for the broker's confirm of each.

    A returned publish raises :class:`Unroutable`.  The broker sends basic.return before
    the basic.ack of the same publish; the return is noted by a channel handler while the
    confirm is awaited (raising from inside that wait would leave the ack unread, to be
    taken for the next publish's).  The message is built for the channel directly, not by
    kombu's Producer, so an absent content type stays absent instead of being serialized
    as JSON.  The embedded broker neither confirms nor returns: published is routed there.
    """

    def __init__(self, connection: Connection):
        self._connection = connection
        self._channel: Any = None  # a kombu channel, once opened
        self._returned: Unroutable | None = None

    def _ensure(self) -> Any:
        if self._channel is None:
            channel = self._connection.channel()
            events = getattr(channel, "events", None)
            if events is not None:
                events["basic_return"].add(self._on_return)
            self._channel = channel
        return self._channel

    def _on_return(self, error: Any, exchange: str, routing_key: str, message: Any) -> None:
        self._returned = Unroutable(
            exchange, routing_key, getattr(error, "reply_code", None), getattr(error, "reply_text", None) or str(error)
        )

    def publish(
        self,
        body: bytes,
        *,
        routing_key: str,
        exchange: str = naming.EVENTS_EXCHANGE,
        message_id: str | None = None,
        event_type: str | None = None,
        headers: dict[Any, Any] | None = None,
        content_type: str | None = CONTENT_TYPE,
        content_encoding: str | None = "binary",
        expiration: float | None = None,
    ) -> None:
        """``content_type`` or ``content_encoding`` None: the property is left out."""
        properties: dict[str, Any] = {"delivery_mode": 2}
        if message_id:
            properties["message_id"] = message_id
        if event_type:
            properties["type"] = event_type
        if expiration is not None:
            properties["expiration"] = str(int(expiration * 1000))
        try:
            channel = self._ensure()
            message = channel.prepare_message(
                body, None, content_type, content_encoding, dict(headers or {}), properties
            )
            self._returned = None
            channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)
        except Exception:
            self.reset()
            raise
        returned, self._returned = self._returned, None
        if returned is not None:
            raise returned

    def reset(self) -> None:
        """Forget the channel (after a connection error) so the next publish opens a new one."""
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # the channel is already gone with its connection
                pass
