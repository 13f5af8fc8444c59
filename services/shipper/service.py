"""The shipper service: registers pending shipments, applies hand-overs."""
from __future__ import annotations

from functools import partial

from services.runtime.spec import Parts, Runtime, ServiceSpec
from services.shipper.handlers import mark_shipped, register_with_carrier
from shared.broker import Subscription

NAME = "shipper"


def build(runtime: Runtime) -> Parts:
    return Parts(handlers={
        "ShipmentStatusChanged": partial(register_with_carrier, carriers=runtime.carriers),
        "PackageShipped": mark_shipped,
    })


SERVICE = ServiceSpec(NAME, build,
                      subscription=Subscription(NAME, ("shipment.status_changed.pending", "package.shipped")))
