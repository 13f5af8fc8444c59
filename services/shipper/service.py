"""The shipper service: registers pending shipments, applies hand-overs."""
from __future__ import annotations

from services.bootstrap import Runtime
from services.commands.service import COMMAND_ROUTING_KEYS, command_handlers
from services.shipper.batch import ShipperBatch
from services.shipper.handlers import mark_shipped, register_with_carrier
from shared.broker import Subscription
from shared.consumer import Batching

NAME = "shipper"
SUBSCRIPTION = Subscription(NAME, ("shipment.status_changed.pending", "package.shipped", *COMMAND_ROUTING_KEYS))


def handlers(runtime: Runtime) -> dict:
    return {
        "ShipmentStatusChanged": lambda event: register_with_carrier(event, runtime.uow(NAME), runtime.carriers),
        "PackageShipped": lambda event: mark_shipped(event, runtime.uow(NAME), runtime.carriers),
        **command_handlers(runtime, NAME),  # operator commands (services/commands/)
    }


def batching(runtime: Runtime) -> Batching | None:
    """Hand-overs applied in batches (services/shipper/batch.py); OMS_BATCH_SIZE=1: one by one."""
    if runtime.settings.batch_size <= 1:
        return None
    return Batching(runtime.settings.batch_size, ShipperBatch(engine=runtime.engine, handlers=handlers(runtime)))
