"""From a delivery to a handler: parse the bytes by the contract, bind log context, dispatch.

Carrier and Omnitron HTTP failures become the failure policy's words here, once.
"""
from __future__ import annotations

from typing import Callable

import structlog

from contracts import CloudEvent, EventRejected, parse_event
from shared.consumer import Delivery
from shared.errors import PermanentError, TransientError
from shared.http import PermanentHTTPError, TransientHTTPError

EventHandler = Callable[[CloudEvent], None]


def dispatcher(handlers: dict[str, EventHandler]) -> Callable[[Delivery], None]:
    def handle(delivery: Delivery) -> None:
        try:
            event = parse_event(delivery.body, delivery.content_type)
        except EventRejected as exc:
            raise PermanentError(exc.reason) from None
        handler = handlers.get(event.type)
        if handler is None:
            raise PermanentError(f"{event.type} events are not handled by this queue (routing key {delivery.routing_key!r})")
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
