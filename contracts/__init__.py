"""What crosses the wire: the CloudEvents envelope, the three events and the shipment statuses.

Nothing here imports from ``shared`` or ``services``: other people's systems are written
against these models (or the JSON Schemas exported from them), never against our internals.
"""

from contracts.commands import PackageCancelled, ShipmentInfoUpdated, ShipmentStatusSet
from contracts.envelope import MAX_BODY_BYTES, CloudEvent, EventRejected, parse_event, peek_data
from contracts.events import (
    EVENT_MODELS,
    Destination,
    Item,
    PackagePacked,
    PackageShipped,
    Payment,
    ShipmentStatusChanged,
    StockLocation,
    routing_key_for,
)
from contracts.statuses import (
    FINAL_STATUSES,
    OMNITRON_ITEM_STATUS,
    ShipmentStatus,
    can_transition,
)

__all__ = [
    "MAX_BODY_BYTES",
    "CloudEvent",
    "EventRejected",
    "parse_event",
    "peek_data",
    "EVENT_MODELS",
    "Destination",
    "Item",
    "PackagePacked",
    "PackageShipped",
    "PackageCancelled",
    "ShipmentInfoUpdated",
    "ShipmentStatusSet",
    "Payment",
    "ShipmentStatusChanged",
    "StockLocation",
    "routing_key_for",
    "FINAL_STATUSES",
    "OMNITRON_ITEM_STATUS",
    "ShipmentStatus",
    "can_transition",
]
