"""The example events of CONTRACT.md §2, as an upstream system would write them: plain dicts."""

from __future__ import annotations

import copy
import json
import uuid

from events import PACKAGE_PACKED_EXAMPLE

EXAMPLE_ENVELOPE = {
    "specversion": "1.0",
    "id": "7d0c6a1e-5a51-4a39-9d6c-1f1b2d2f4c10",
    "source": "/oms/instore/store-42",
    "type": "PackagePacked",
    "time": "2026-11-27T10:00:00Z",
    "subject": "PKG-1001",
    "datacontenttype": "application/json",
}

PACKAGE_PACKED = PACKAGE_PACKED_EXAMPLE  # every test's sample package starts from it (tests/events.py)

PACKAGE_SHIPPED = {"package_id": "PKG-1001", "shipped_at": "2026-11-27T12:30:00Z"}

SHIPMENT_STATUS_CHANGED = {
    "shipment_id": "b0f2...",
    "package_id": "PKG-1001",
    "order_number": "ORD-1001",
    "carrier": "sandbox",
    "tracking_number": "SBX123456789",
    "tracking_url": "https://track.example/SBX123456789",
    "previous_status": "registered",
    "status": "shipped",
    "carrier_status": "SHIPPING",
    "sequence": 3,
    "changed_at": "2026-11-27T12:30:01Z",
    "order_item_ids": [555],
}

PACKAGE_CANCELLED = {"package_id": "PKG-1001", "reason": "customer cancelled", "cancelled_at": "2026-11-27T11:00:00Z"}

SHIPMENT_INFO_UPDATED = {
    "package_id": "PKG-1001",
    "carrier": "other-carrier",
    "tracking_number": "ABC123",
    "tracking_url": "https://track.example/ABC123",
    "shipping_company": "Other Cargo",
    "updated_at": "2026-11-27T11:30:00Z",
}

SHIPMENT_STATUS_SET = {
    "package_id": "PKG-1001",
    "status": "delivered",
    "reason": "customer picked it up at the store",
    "set_at": "2026-11-28T09:00:00Z",
}

EXAMPLE_DATA = {
    "PackagePacked": PACKAGE_PACKED,
    "PackageShipped": PACKAGE_SHIPPED,
    "ShipmentStatusChanged": SHIPMENT_STATUS_CHANGED,
    "PackageCancelled": PACKAGE_CANCELLED,
    "ShipmentInfoUpdated": SHIPMENT_INFO_UPDATED,
    "ShipmentStatusSet": SHIPMENT_STATUS_SET,
}


def envelope(event_type: str, data: dict | None = None, event_id: str | None = None, **extra) -> dict:
    """A CloudEvents envelope around ``data`` (by default the contract's example for the type)."""
    body = copy.deepcopy(EXAMPLE_ENVELOPE)
    body["type"] = event_type
    body["id"] = event_id or str(uuid.uuid4())
    body["data"] = copy.deepcopy(EXAMPLE_DATA[event_type] if data is None else data)
    body.update(extra)
    return body


def example(event_type: str) -> dict:
    """The contract's example event, with the contract's example id."""
    return envelope(event_type, event_id=EXAMPLE_ENVELOPE["id"])


def packed(
    package_id: str = "PKG-1001",
    order_number: str = "ORD-1001",
    carrier: str = "sandbox",
    item_ids: tuple[int, ...] = (555,),
    **overrides,
) -> dict:
    data = copy.deepcopy(PACKAGE_PACKED)
    item = data["items"][0]
    data.update(
        package_id=package_id,
        order_number=order_number,
        carrier=carrier,
        items=[{**item, "order_item_id": i, "sku": f"SKU-{i}"} for i in item_ids],
    )
    data.update(overrides)
    return data


def shipped(package_id: str = "PKG-1001", shipped_at: str = "2026-11-27T12:30:00Z") -> dict:
    return {"package_id": package_id, "shipped_at": shipped_at}


def status_changed(
    sequence: int,
    status: str,
    previous_status: str | None,
    shipment_id: str = "shp-1",
    order_item_ids: tuple[int, ...] = (555,),
    **overrides,
) -> dict:
    data = copy.deepcopy(SHIPMENT_STATUS_CHANGED)
    data.update(
        shipment_id=shipment_id,
        sequence=sequence,
        status=status,
        previous_status=previous_status,
        order_item_ids=list(order_item_ids),
    )
    data.update(overrides)
    return data


def with_value(body: dict, value, *path) -> dict:
    """A deep copy of ``body`` with the value at ``path`` (keys and list indexes) replaced."""
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def to_bytes(body: dict) -> bytes:
    return json.dumps(body).encode()


def parsed(event_type: str, data: dict | None = None, event_id: str | None = None):
    """The event as a consumer gets it: contract bytes through ``parse_event``."""
    from contracts import parse_event

    return parse_event(to_bytes(envelope(event_type, data, event_id)))
