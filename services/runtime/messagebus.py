"""From a delivery to a handler: parse the message by the contract, bind log context, dispatch.

Carrier and Omnitron HTTP failures become the failure policy's words here, once.
"""
from __future__ import annotations

from typing import Callable

import structlog

from contracts import CloudEvent, EventRejected, parse_event
from contracts.events import event_type_of_routing_key, travels_under
from shared import naming
from shared.consumer import Delivery
from shared.errors import PermanentError, TransientError
from shared.http import PermanentHTTPError, TransientHTTPError

EventHandler = Callable[[CloudEvent], None]


def published_routing_key(delivery: Delivery) -> str:
    """The routing key the event was published under. A copy back from the services' own
    retry or replay path carries it in a header (its delivery came under a queue's name);
    the consumer keeps ``x-oms-`` headers only on those copies."""
    original = delivery.headers.get(naming.HEADER_ROUTING_KEY)
    return original if isinstance(original, str) else delivery.routing_key


def check_routing_key(event: CloudEvent, routing_key: str) -> None:
    """An event under another type's routing key is refused (CONTRACT.md §1): a PackageShipped
    under ``package.packed``, a change to ``shipped`` under ``shipment.status_changed.pending``.
    A key that is no event's (a queue's name: the default exchange, a broker dead-letter copy)
    only ever comes from the services' own paths, and says nothing about the type."""
    if event_type_of_routing_key(routing_key) is None:
        return
    if not travels_under(event.type, event.data, routing_key):
        raise PermanentError(f"a {event.type} event under routing key {routing_key!r}, "
                             "which is not its own: refused")


def dispatcher(handlers: dict[str, EventHandler]) -> Callable[[Delivery], None]:
    def handle(delivery: Delivery) -> None:
        try:
            event = parse_event(delivery.body, delivery.content_type, delivery.headers)
        except EventRejected as exc:
            raise PermanentError(exc.reason) from None
        handler = handlers.get(event.type)
        if handler is None:
            raise PermanentError(f"{event.type} events are not handled by this queue (routing key {delivery.routing_key!r})")
        check_routing_key(event, published_routing_key(delivery))
        data = event.data
        context = {"event_id": event.id, "event_type": event.type, "package_id": getattr(data, "package_id", None)}
        if getattr(data, "shipment_id", None):
            context["shipment_id"] = data.shipment_id
        with structlog.contextvars.bound_contextvars(**context):
            try:
                handler(event)
            except TransientHTTPError as exc:
                raise TransientError(f"{type(exc).__name__}: {exc}", retry_after_s=exc.retry_after) from exc
            except PermanentHTTPError as exc:
                raise PermanentError(f"HTTP {exc.status}: {exc.message}") from exc

    return handle
