"""The Omnitron publisher: relays every shipment status change to Omnitron."""
from __future__ import annotations

from services.bootstrap import Runtime
from services.omnitron_publisher.handlers import relay_to_omnitron
from shared.broker import Subscription

NAME = "omnitron-publisher"
SUBSCRIPTION = Subscription(NAME, ("shipment.status_changed.*",))


def handlers(runtime: Runtime) -> dict:
    omnitron = runtime.omnitron()
    return {"ShipmentStatusChanged": lambda event: relay_to_omnitron(event, runtime.uow(NAME), omnitron)}
