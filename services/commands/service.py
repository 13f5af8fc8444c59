"""How the shipper takes the operator commands: its extra bindings and handlers."""

from __future__ import annotations

from contracts.commands import COMMAND_ROUTING_KEYS as _KEYS
from services.commands.handlers import cancel_package, set_shipment_status, update_shipment_info

#: The shipper's extra bindings (CONTRACT.md §1).
COMMAND_ROUTING_KEYS = tuple(_KEYS.values())


def command_handlers(runtime, consumer: str) -> dict:
    """The commands' handlers. They record their inbox row themselves, in the transaction
    each command's table calls for (a cancellation around its carrier DELETE records it
    after the call), so each is given a unit of work not bound to its event."""
    max_attempts, unbound = runtime.settings.max_attempts, runtime.units_of_work(consumer)
    return {
        "PackageCancelled": lambda event, _bound: cancel_package(event, unbound(), runtime.carriers),
        "ShipmentInfoUpdated": lambda event, _bound: update_shipment_info(
            event, unbound(), runtime.carriers, max_attempts
        ),
        "ShipmentStatusSet": lambda event, _bound: set_shipment_status(event, unbound()),
    }
