"""Event bodies as an upstream system would write them: JSON bytes, built by hand."""

from __future__ import annotations

import copy
import json
import uuid

#: The contract's example PackagePacked data (CONTRACT.md §2). The sample packages of every
#: test start from it; tests/unit/contract_examples.py gives it as the contract's example.
PACKAGE_PACKED_EXAMPLE = {
    "package_id": "PKG-1001",
    "order_number": "ORD-1001",
    "carrier": "sandbox",
    "delivery_type": "CUSTOMER",
    "packed_at": "2026-11-27T10:00:00Z",
    "items": [
        {"order_item_id": 555, "sku": "SKU-1", "barcode": "8690000000011", "name": "Shirt", "quantity": 2, "deci": 1.5}
    ],
    "destination": {
        "name": "Ada",
        "surname": "Lovelace",
        "phone": "+905551112233",
        "country_code": "TR",
        "city": "Istanbul",
        "district": "Beyoglu",
        "township": "",
        "zipcode": "34433",
        "address_line": "Istiklal Cd. 1",
    },
    "delivery_note": "Ring twice",
    "payment": {"amount": "120.50", "currency": "TRY"},
    "stock_location": {"id": "42", "name": "Kadikoy Store"},
}


def sample_packed(**changes) -> dict:
    """The contract's example PackagePacked data, a copy of its own, with ``changes``."""
    return {**copy.deepcopy(PACKAGE_PACKED_EXAMPLE), **changes}


def envelope(event_type: str, data: dict, event_id: str | None = None, **extra) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/oms/instore/store-42",
        "type": event_type,
        "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
        **extra,
    }


def package_packed(
    package_id: str, order_number: str, item_ids: list[int], carrier: str = "sandbox", payment: bool = False
) -> dict:
    data = {
        "package_id": package_id,
        "order_number": order_number,
        "carrier": carrier,
        "delivery_type": "CUSTOMER",
        "packed_at": "2026-11-27T10:00:00Z",
        "items": [
            {
                "order_item_id": i,
                "sku": f"SKU-{i}",
                "barcode": f"869{i:010d}",
                "name": "Shirt",
                "quantity": 1 + i % 3,
                "deci": 1.5,
            }
            for i in item_ids
        ],
        "destination": copy.deepcopy(PACKAGE_PACKED_EXAMPLE["destination"]),
        "delivery_note": PACKAGE_PACKED_EXAMPLE["delivery_note"],
    }
    if payment:
        data["payment"] = copy.deepcopy(PACKAGE_PACKED_EXAMPLE["payment"])
    return envelope("PackagePacked", data)


def package_shipped(package_id: str) -> dict:
    return envelope("PackageShipped", {"package_id": package_id, "shipped_at": "2026-11-27T12:30:00Z"})


def package_cancelled(package_id: str, reason: str = "customer cancelled", event_id: str | None = None) -> dict:
    return envelope(
        "PackageCancelled",
        {"package_id": package_id, "reason": reason, "cancelled_at": "2026-11-27T11:00:00Z"},
        event_id=event_id,
    )


def shipment_info_updated(package_id: str, updated_at: str = "2026-11-27T11:30:00Z", **fields) -> dict:
    return envelope("ShipmentInfoUpdated", {"package_id": package_id, **fields, "updated_at": updated_at})


def shipment_status_set(package_id: str, status: str, reason: str = "customer picked it up at the store") -> dict:
    return envelope(
        "ShipmentStatusSet",
        {"package_id": package_id, "status": status, "reason": reason, "set_at": "2026-11-28T09:00:00Z"},
    )


def to_bytes(event: dict) -> bytes:
    return json.dumps(event).encode()


def shipment_status_changed(
    shipment_id: str, sequence: int, status: str, previous_status: str | None, item_ids: list[int]
) -> dict:
    n = shipment_id.rsplit("-", 1)[-1]
    return envelope(
        "ShipmentStatusChanged",
        {
            "shipment_id": shipment_id,
            "package_id": f"PKG-{n}",
            "order_number": f"ORD-{n}",
            "carrier": "sandbox",
            "tracking_number": f"SBX{n}",
            "tracking_url": f"https://track.example/SBX{n}",
            "previous_status": previous_status,
            "status": status,
            "carrier_status": None,
            "sequence": sequence,
            "changed_at": "2026-11-27T12:30:00Z",
            "order_item_ids": item_ids,
        },
        source="/oms-shipments/tracker",
        subject=f"PKG-{n}",
    )
