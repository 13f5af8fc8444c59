"""The three events of CONTRACT.md §2, as frozen pydantic models.

Unknown fields are ignored (forward compatibility); required fields are enforced.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.statuses import ShipmentStatus


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")




class Item(_Data):
    order_item_id: int
    sku: str = Field(min_length=1)
    barcode: str | None = None
    name: str | None = None
    quantity: int = Field(ge=1)
    deci: float | None = Field(default=None, ge=0)


class Destination(_Data):
    name: str
    surname: str
    phone: str
    country_code: str = Field(min_length=2, max_length=3)
    city: str
    district: str
    township: str = ""
    zipcode: str = ""
    address_line: str


class Payment(_Data):
    """Present only for pay on delivery."""

    amount: Decimal = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


class StockLocation(_Data):
    id: str
    name: str | None = None


class PackagePacked(_Data):
    package_id: str = Field(min_length=1)
    order_number: str = Field(min_length=1)
    carrier: str = Field(min_length=1)
    delivery_type: Literal["CUSTOMER", "PICK_UP_LOCATION"]
    # Upstream times need their UTC offset (RFC 3339): a bare local time cannot be placed.
    packed_at: AwareDatetime
    items: list[Item] = Field(min_length=1)
    destination: Destination
    delivery_note: str | None = None
    payment: Payment | None = None
    stock_location: StockLocation | None = None


class PackageShipped(_Data):
    package_id: str = Field(min_length=1)
    shipped_at: AwareDatetime


class ShipmentStatusChanged(_Data):
    shipment_id: str
    package_id: str
    order_number: str
    carrier: str
    tracking_number: str | None = None
    tracking_url: str | None = None
    previous_status: ShipmentStatus | None = None
    status: ShipmentStatus
    carrier_status: str | None = None
    sequence: int = Field(ge=1)
    changed_at: datetime
    order_item_ids: list[int]


EVENT_MODELS: dict[str, type[_Data]] = {
    "PackagePacked": PackagePacked,
    "PackageShipped": PackageShipped,
    "ShipmentStatusChanged": ShipmentStatusChanged,
}

_FIXED_ROUTING_KEYS = {"PackagePacked": "package.packed", "PackageShipped": "package.shipped"}


def routing_key_for(event_type: str, data: _Data) -> str:
    """The routing key an event of this type travels under (CONTRACT.md §1)."""
    if isinstance(data, ShipmentStatusChanged):
        return f"shipment.status_changed.{data.status.value}"
    return _FIXED_ROUTING_KEYS[event_type]
