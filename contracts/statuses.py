"""Shipment statuses, their order and the transitions between them (CONTRACT.md §3).

"Never go back" is one question, :func:`can_transition`: every status has a rank, a
shipment only ever moves to a higher rank, and a final status never changes again.
"""

from __future__ import annotations

from enum import Enum


class ShipmentStatus(str, Enum):
    PENDING = "pending"
    REGISTERED = "registered"
    SHIPPED = "shipped"
    ATTEMPTED_DELIVERY = "attempted_delivery"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.DELIVERY_FAILED, ShipmentStatus.CANCELLED})

# Attempted delivery ranks below ready-for-pickup: after a failed attempt a carrier
# often holds the parcel at a branch, while a parcel waiting at a pickup point is
# never "attempted" again.  All final statuses share the top rank.
RANK: dict[ShipmentStatus, int] = {
    ShipmentStatus.PENDING: 0,
    ShipmentStatus.REGISTERED: 1,
    ShipmentStatus.SHIPPED: 2,
    ShipmentStatus.ATTEMPTED_DELIVERY: 3,
    ShipmentStatus.READY_FOR_PICKUP: 4,
    ShipmentStatus.DELIVERED: 5,
    ShipmentStatus.DELIVERY_FAILED: 5,
    ShipmentStatus.CANCELLED: 5,
}

# Omnitron order item status codes ("Order status codes"); statuses without a code are
# relayed as an ``extra_field`` update instead (CONTRACT.md §5).
OMNITRON_ITEM_STATUS: dict[ShipmentStatus, str] = {
    ShipmentStatus.SHIPPED: "500",
    ShipmentStatus.READY_FOR_PICKUP: "520",
    ShipmentStatus.ATTEMPTED_DELIVERY: "540",
    ShipmentStatus.DELIVERED: "550",
}


def can_transition(current: ShipmentStatus | None, new: ShipmentStatus) -> bool:
    """Whether a shipment in ``current`` (None: no shipment yet) may move to ``new``.

    Repeated and stale answers (same or lower rank) are refused, so are changes
    after a final status.  Cancellation is a carrier deleting its record, which
    can happen any time before the parcel is final.
    """
    if current is None:
        return new is ShipmentStatus.PENDING
    if current.is_final or new is current:
        return False
    if new is ShipmentStatus.CANCELLED:
        return True
    return RANK[new] > RANK[current]


def allowed_transitions() -> dict[ShipmentStatus, frozenset[ShipmentStatus]]:
    """The whole transition table, for docs and tests."""
    return {
        current: frozenset(new for new in ShipmentStatus if can_transition(current, new)) for current in ShipmentStatus
    }
