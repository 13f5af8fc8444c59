"""How the shipper takes the operator commands: its extra bindings and handlers."""
from __future__ import annotations

from contracts.commands import COMMAND_ROUTING_KEYS as _KEYS
from services.commands.handlers import cancel_package, set_shipment_status, update_shipment_info

#: The shipper's extra bindings (CONTRACT.md §1).
COMMAND_ROUTING_KEYS = tuple(_KEYS.values())


def command_handlers(runtime, consumer: str) -> dict:
    max_attempts = runtime.settings.max_attempts
    return {
        "PackageCancelled": lambda event: cancel_package(event, runtime.uow(consumer), runtime.carriers),
        "ShipmentInfoUpdated": lambda event: update_shipment_info(event, runtime.uow(consumer), runtime.carriers,
                                                                  max_attempts),
        "ShipmentStatusSet": lambda event: set_shipment_status(event, runtime.uow(consumer)),
    }
