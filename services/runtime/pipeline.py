"""One message's way through a service, top to bottom.

1. **decode**, once, on arrival (the connection thread): bytes → the typed event, its
   routing key checked against its type.  The ordering key and the handler read this
   same parsed event.  What the contract refuses is kept as the reason it gives.
2. **idempotency**: the handler's unit of work is bound to the event; entering it records
   the event in the inbox (``source`` + ``id``), and an event applied before raises
   :class:`~services.domain.uow.AlreadyApplied` there, which ends its handling here:
   nothing was changed, the message is acked.
3. **the handler** (a handler thread): the service's function for the event's type, with
   the unit of work; what it raises is data for the failure policy.  The errors the
   carrier and Omnitron clients raise already are the policy's words (shared/http.py).
4. **one decision**: ``shared.failure.decide`` → ack, a retry tier, or the dead-letter
   queue, and its **disposal** on the connection thread (``shared.disposal.Disposer``),
   by the queue worker (``shared/queue_worker.py``), which owns the channel.

:meth:`Pipeline.apply` is where one event's handling begins and ends.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

import structlog

from contracts import CloudEvent, EventRejected, parse_event
from contracts.events import event_type_of_routing_key, travels_under
from services.domain.uow import AlreadyApplied, UnitOfWork
from services.runtime.spec import Handler
from shared import tracing
from shared.delivery import Delivery
from shared.failure import PermanentError
from shared.logging import get_logger


@dataclass(frozen=True)
class Decoded:
    """What the contract made of a delivery's bytes: its event, or why it refused them."""

    event: CloudEvent | None
    refused: str | None = None


class Pipeline:
    def __init__(
        self,
        service: str,
        handlers: Mapping[str, Handler],
        unit_of_work: Callable[..., UnitOfWork],
        ordering_key: Callable[[CloudEvent], str | None] | None = None,
    ):
        self._handlers = handlers
        self._unit_of_work = unit_of_work
        self._ordering_key = ordering_key
        self._log = get_logger(service=service)

    # 1. decode (the connection thread)
    def decode(self, delivery: Delivery) -> Delivery:
        try:
            event = parse_event(delivery.body, delivery.content_type, delivery.headers)
        except EventRejected as exc:
            return dataclasses.replace(delivery, decoded=Decoded(None, exc.reason))
        return dataclasses.replace(delivery, decoded=Decoded(event, self._refusal(event, delivery)))

    def _refusal(self, event: CloudEvent, delivery: Delivery) -> str | None:
        if event.type not in self._handlers:
            return f"{event.type} events are not handled by this queue (routing key {delivery.routing_key!r})"
        # An event under another type's routing key is refused (CONTRACT.md §1): a PackageShipped
        # under ``package.packed``, a change to ``shipped`` under ``shipment.status_changed.pending``.
        # A key that is no event's (a queue's name: the default exchange, a broker dead-letter
        # copy) only ever comes from the services' own paths, and says nothing about the type.
        routing_key = delivery.published_routing_key
        if event_type_of_routing_key(routing_key) is not None and not travels_under(
            event.type, event.data, routing_key
        ):
            return f"a {event.type} event under routing key {routing_key!r}, which is not its own: refused"
        return None

    def ordering_key(self, delivery: Delivery) -> str | None:
        decoded: Decoded = delivery.decoded
        if self._ordering_key is None or decoded.event is None or decoded.refused:
            return None  # any thread, where it is dead-lettered with its reason
        return self._ordering_key(decoded.event)

    # 2.-3. idempotency and the handler (a handler thread); 4. is the policy's, with what this raises
    def handle(self, delivery: Delivery) -> None:
        self.apply(self.event_of(delivery), delivery.published_routing_key)

    @staticmethod
    def event_of(delivery: Delivery) -> CloudEvent:
        """The delivery's parsed event; what the contract refused raises its reason."""
        decoded: Decoded = delivery.decoded
        if decoded.refused is not None:
            raise PermanentError(decoded.refused)
        return decoded.event

    def apply(self, event: CloudEvent, routing_key: str | None = None) -> None:
        """One event's handling, from its beginning to its end: applied once, or not at all."""
        with (
            structlog.contextvars.bound_contextvars(**_log_context(event)),
            tracing.handling(event, routing_key or event.type),
        ):
            try:
                self._handlers[event.type](event, self._unit_of_work(event=event))
            except AlreadyApplied:
                self._log.info("duplicate event ignored")


def _log_context(event: CloudEvent) -> dict:
    data = event.data
    context = {"event_id": event.id, "event_type": event.type, "package_id": getattr(data, "package_id", None)}
    if getattr(data, "shipment_id", None):
        context["shipment_id"] = data.shipment_id
    return context
