"""The shipper service: registers pending shipments, applies hand-overs and the operator commands."""

from __future__ import annotations

from functools import partial

from services.commands.service import COMMAND_ROUTING_KEYS, command_handlers
from services.runtime.spec import Parts, Runtime, ServiceSpec
from services.shipper.batch import ShipperBatch
from services.shipper.handlers import mark_shipped, register_with_carrier
from shared.broker import Subscription

NAME = "shipper"


def build(runtime: Runtime) -> Parts:
    return Parts(
        handlers={
            "ShipmentStatusChanged": partial(register_with_carrier, carriers=runtime.carriers),
            "PackageShipped": partial(mark_shipped, carriers=runtime.carriers),
            **command_handlers(runtime),  # operator commands (services/commands/)
        },
        # Hand-overs applied in batches (services/shipper/batch.py); OMS_BATCH_SIZE=1: one by one.
        batches=lambda pipeline: ShipperBatch(engine=runtime.engine, pipeline=pipeline),
    )


SERVICE = ServiceSpec(
    NAME,
    build,
    subscription=Subscription(NAME, ("shipment.status_changed.pending", "package.shipped", *COMMAND_ROUTING_KEYS)),
)
