"""The Omnitron publisher: relays every shipment status change to Omnitron."""
from __future__ import annotations

from contracts import EventRejected, peek_data
from services.runtime.bootstrap import Runtime
from services.omnitron_publisher.handlers import relay_to_omnitron
from services.omnitron_publisher.settle import UnsettledCalls
from shared.broker import Subscription

NAME = "omnitron-publisher"
SUBSCRIPTION = Subscription(NAME, ("shipment.status_changed.*",))


def shipment_of(delivery) -> str | None:
    """A shipment's changes go to one handler thread, so they reach Omnitron in the order they came."""
    try:
        return str(peek_data(delivery.body, delivery.content_type, delivery.headers)["shipment_id"])
    except (EventRejected, KeyError, TypeError):
        return None  # not a status change: any thread, where it is dead-lettered with its reason


ORDERING_KEY = shipment_of


def handlers(runtime: Runtime) -> dict:
    omnitron, settle_s = runtime.omnitron(), runtime.settings.omnitron_settle_s
    return {"ShipmentStatusChanged": lambda event: relay_to_omnitron(event, runtime.uow(NAME), omnitron, settle_s)}


def components(runtime: Runtime) -> list:
    return [UnsettledCalls(engine=runtime.engine, omnitron=runtime.omnitron(), stop=runtime.stop,
                           settle_s=runtime.settings.omnitron_settle_s)]
