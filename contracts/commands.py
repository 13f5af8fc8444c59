"""The operator commands of CONTRACT.md §2 ("Operator commands"), as frozen pydantic models.

What Akinon's OMS does with its shipment commands, as events: a cancellation before the
hand-over, a correction of the shipment information, a status set by an employee. Each
names a package (its shipment may not exist yet: the command then waits for the packing).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from contracts.statuses import ShipmentStatus
from contracts.values import AwareTime, LongText, Name, Text, Url


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PackageCancelled(_Command):
    """Akinon's cancellation of a package before it leaves."""

    package_id: Name
    reason: LongText | None = None
    cancelled_at: AwareTime


class ShipmentInfoUpdated(_Command):
    """Akinon's "Update Shipment Info of Package"; ``null`` counts as absent, one field at least."""

    package_id: Name
    carrier: Name | None = None
    tracking_number: Text | None = None
    tracking_url: Url | None = None
    shipping_company: Text | None = None
    updated_at: AwareTime

    @model_validator(mode="after")
    def _something_to_update(self) -> "ShipmentInfoUpdated":
        if all(
            value is None for value in (self.carrier, self.tracking_number, self.tracking_url, self.shipping_company)
        ):
            raise ValueError("at least one of carrier, tracking_number, tracking_url, shipping_company is needed")
        return self


#: The statuses an employee may set (CONTRACT.md §2, ShipmentStatusSet).
SETTABLE_STATUSES = ("ready_for_pickup", "attempted_delivery", "delivered", "delivery_failed")
#: The statuses a shipment may be in for an employee to set one.
SETTABLE_FROM = frozenset(
    {
        ShipmentStatus.SHIPPED,
        ShipmentStatus.READY_FOR_PICKUP,
        ShipmentStatus.ATTEMPTED_DELIVERY,
        ShipmentStatus.DELIVERY_FAILED,
    }
)


class ShipmentStatusSet(_Command):
    """Akinon's "Update The Package's Shipment Status": an employee setting the status by hand."""

    package_id: Name
    status: Literal["ready_for_pickup", "attempted_delivery", "delivered", "delivery_failed"]
    reason: LongText | None = None
    set_at: AwareTime

    @property
    def shipment_status(self) -> ShipmentStatus:
        return ShipmentStatus(self.status)


COMMAND_MODELS: dict[str, type[_Command]] = {
    "PackageCancelled": PackageCancelled,
    "ShipmentInfoUpdated": ShipmentInfoUpdated,
    "ShipmentStatusSet": ShipmentStatusSet,
}

COMMAND_ROUTING_KEYS = {
    "PackageCancelled": "package.cancelled",
    "ShipmentInfoUpdated": "package.shipment_info_updated",
    "ShipmentStatusSet": "package.shipment_status_set",
}
