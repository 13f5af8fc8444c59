"""The shipper service: registers pending shipments, applies hand-overs."""
from __future__ import annotations

from services.runtime.bootstrap import Runtime
from services.shipper.handlers import mark_shipped, register_with_carrier
from shared.broker import Subscription

NAME = "shipper"
SUBSCRIPTION = Subscription(NAME, ("shipment.status_changed.pending", "package.shipped"))


def handlers(runtime: Runtime) -> dict:
    return {
        "ShipmentStatusChanged": lambda event: register_with_carrier(event, runtime.uow(NAME), runtime.carriers),
        "PackageShipped": lambda event: mark_shipped(event, runtime.uow(NAME)),
    }
