"""How the shipper takes the operator commands: its extra bindings and handlers."""

from __future__ import annotations

from functools import partial

from contracts.commands import COMMAND_ROUTING_KEYS as _KEYS
from services.commands.handlers import cancel_package, set_shipment_status, update_shipment_info

#: The shipper's extra bindings (CONTRACT.md §1).
COMMAND_ROUTING_KEYS = tuple(_KEYS.values())


def command_handlers(runtime) -> dict:
    """The commands' handlers; each is given the unit of work bound to its event, as every handler is."""
    return {
        "PackageCancelled": partial(cancel_package, carriers=runtime.carriers),
        "ShipmentInfoUpdated": partial(
            update_shipment_info, carriers=runtime.carriers, max_attempts=runtime.settings.max_attempts
        ),
        "ShipmentStatusSet": set_shipment_status,
    }
