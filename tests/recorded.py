"""What the services would have recorded for a status change, written straight into their database.

The services act only on changes they recorded themselves (CONTRACT.md §2): a test that
publishes a ShipmentStatusChanged without running the packer and tracker first stores the
change's package, shipment and history row as those services would have.
"""

from __future__ import annotations

import json

import psycopg

from events import package_packed


def record_change(database_url: str, change: dict, packed_at: str = "2026-11-27T10:00:00Z") -> None:
    """``change``: a ShipmentStatusChanged envelope (tests/events.py); existing rows are kept."""
    data = change["data"]
    packed = {
        **package_packed(data["package_id"], data["order_number"], data["order_item_ids"])["data"],
        "packed_at": packed_at,
    }
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO packages (package_id, first_seen_at, order_number, carrier, delivery_type, packed_at, packed) "
            "VALUES (%s, now(), %s, %s, 'CUSTOMER', %s, %s) ON CONFLICT DO NOTHING",
            (data["package_id"], data["order_number"], data["carrier"], packed_at, json.dumps(packed)),
        )
        for item_id in data["order_item_ids"]:
            connection.execute(
                "INSERT INTO package_items (package_id, order_item_id, sku, quantity) "
                "VALUES (%s, %s, %s, 1) ON CONFLICT DO NOTHING",
                (data["package_id"], item_id, f"SKU-{item_id}"),
            )
        connection.execute(
            "INSERT INTO shipments (id, package_id, order_number, carrier, status, sequence, tracking_number, "
            "tracking_url, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), now()) "
            "ON CONFLICT DO NOTHING",
            (
                data["shipment_id"],
                data["package_id"],
                data["order_number"],
                data["carrier"],
                data["status"],
                data["sequence"],
                data["tracking_number"],
                data["tracking_url"],
            ),
        )
        connection.execute(
            "INSERT INTO shipment_status_changes (shipment_id, sequence, previous_status, status, carrier_status, "
            "changed_at, event_id, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                data["shipment_id"],
                data["sequence"],
                data["previous_status"],
                data["status"],
                data["carrier_status"],
                data["changed_at"],
                change["id"],
                json.dumps(data),
            ),
        )
