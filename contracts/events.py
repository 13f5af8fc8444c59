"""The events of CONTRACT.md §2 (the operator commands are in contracts/commands.py), as frozen pydantic models.

Unknown fields are ignored (forward compatibility); required fields are enforced; every
value is checked as strictly as it is typed (contracts/values.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.commands import COMMAND_MODELS, COMMAND_ROUTING_KEYS
from contracts.statuses import ShipmentStatus
from contracts.values import (
    AwareTime,
    CountryCode,
    CurrencyCode,
    LongText,
    Money,
    Name,
    NonNegativeNumber,
    PositiveInt,
    Text,
    Time,
    Url,
    first_repeat,
)


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Item(_Data):
    order_item_id: PositiveInt
    sku: Name
    barcode: Text | None = None
    name: Text | None = None
    quantity: PositiveInt
    deci: NonNegativeNumber | None = None


class Destination(_Data):
    name: Text
    surname: Text
    phone: Text
    country_code: CountryCode
    city: Text
    district: Text
    township: Text = ""
    zipcode: Text = ""
    address_line: LongText


class Payment(_Data):
    """Present only for pay on delivery."""

    amount: Money
    currency: CurrencyCode


class StockLocation(_Data):
    id: Text
    name: Text | None = None


class PackagePacked(_Data):
    package_id: Name
    order_number: Name
    carrier: Name
    delivery_type: Literal["CUSTOMER", "PICK_UP_LOCATION"]
    # Upstream times need their UTC offset (RFC 3339): a bare local time cannot be placed.
    packed_at: AwareTime
    items: list[Item] = Field(min_length=1)
    destination: Destination
    delivery_note: LongText | None = None
    payment: Payment | None = None
    stock_location: StockLocation | None = None

    @field_validator("items")
    @classmethod
    def _one_item_per_order_item(cls, items: list[Item]) -> list[Item]:
        # Omnitron takes one status per order item: two items of one id could not both be sent.
        repeated = first_repeat([item.order_item_id for item in items])
        if repeated is not None:
            raise ValueError(f"order item id {repeated} appears more than once")
        return items


class PackageShipped(_Data):
    package_id: Name
    shipped_at: AwareTime
    # For carriers without integration (CONTRACT.md §4); ignored, with a warning, for the others.
    tracking_number: Text | None = None
    tracking_url: Url | None = None
    shipping_company: Text | None = None


class ShipmentStatusChanged(_Data):
    shipment_id: Text
    package_id: Text
    order_number: Text
    carrier: Text
    tracking_number: Text | None = None
    tracking_url: Url | None = None
    previous_status: ShipmentStatus | None = None
    status: ShipmentStatus
    carrier_status: Text | None = None
    sequence: PositiveInt
    changed_at: Time
    # The ids of a package the services recorded (unique there: PackagePacked checks it).
    order_item_ids: list[PositiveInt]
    label_url: Url | None = None
    shipping_company: Text | None = None
    reason: LongText | None = None

    @property
    def is_info_change(self) -> bool:
        """An information change (ShipmentInfoUpdated): the status stays, the sequence grows."""
        return self.previous_status is not None and self.previous_status == self.status


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "PackagePacked": PackagePacked,
    "PackageShipped": PackageShipped,
    "ShipmentStatusChanged": ShipmentStatusChanged,
    **COMMAND_MODELS,
}

_FIXED_ROUTING_KEYS = {"PackagePacked": "package.packed", "PackageShipped": "package.shipped", **COMMAND_ROUTING_KEYS}
# A status change travels under its status; an information change (status = previous status)
# under the second prefix (CONTRACT.md §1).
_STATUS_ROUTING_PREFIXES = ("shipment.status_changed.", "shipment.info_changed.")


def routing_key_for(event_type: str, data: _Data) -> str:
    """The routing key an event of this type travels under (CONTRACT.md §1)."""
    if isinstance(data, ShipmentStatusChanged):
        prefix = _STATUS_ROUTING_PREFIXES[1 if data.is_info_change else 0]
        return f"{prefix}{data.status.value}"
    return _FIXED_ROUTING_KEYS[event_type]


def event_type_of_routing_key(routing_key: str) -> str | None:
    """The event type the contract publishes under this routing key; None for any other key."""
    for event_type, key in _FIXED_ROUTING_KEYS.items():
        if routing_key == key:
            return event_type
    if routing_key.startswith(_STATUS_ROUTING_PREFIXES):
        return "ShipmentStatusChanged"
    return None


def travels_under(event_type: str, data: _Data, routing_key: str) -> bool:
    """Whether an event of this type and data may arrive under this routing key (CONTRACT.md §1)."""
    if isinstance(data, ShipmentStatusChanged):
        return routing_key in (prefix + data.status.value for prefix in _STATUS_ROUTING_PREFIXES)
    return routing_key == _FIXED_ROUTING_KEYS.get(event_type)
